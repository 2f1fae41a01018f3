package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/services/feedback/store"
)

// Posts under a customer's pseudonym (the feedback link's openid).

func testPostUnderPseudonymIsLinked(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, withPseudonym(created("o", "kf1", t0)), withPseudonym(closed("o", "kf1", t0.Add(10*time.Minute))),
		withPseudonym(closed("o", "kf2", t0.Add(5*time.Hour))))
	upsert(t, s,
		post(1, pseudonymOf("o"), t0.Add(time.Hour), "through the link"),
		post(2, "o", t0.Add(2*time.Hour), "posted before pseudonyms"),
		post(3, pseudonymOf("o"), t0.Add(6*time.Hour), "after the second session"),
		post(4, pseudonymOf("o"), t0.Add(5*time.Minute), "before any close"),
	)
	p := onlyPost(t, s, "1")
	assertLinked(t, p, "kf1", t0.Add(10*time.Minute))
	if p.Session != nil && !p.Session.StartedAt.Equal(t0) {
		t.Errorf("a post linked by pseudonym: started_at %v, want %v", p.Session.StartedAt, t0)
	}
	assertLinked(t, onlyPost(t, s, "2"), "kf1", t0.Add(10*time.Minute))
	assertLinked(t, onlyPost(t, s, "3"), "kf2", t0.Add(5*time.Hour))
	assertNotLinked(t, onlyPost(t, s, "4"))

	// A pseudonym recorded with any fact of a customer identifies them,
	// also for a session whose own fact was stored without one.
	record(t, s, closed("o-x", "kf3", t0), withPseudonym(closed("o-x", "kf4", t0.Add(5*time.Hour))))
	upsert(t, s, post(5, pseudonymOf("o-x"), t0.Add(time.Hour), "after the session stored without a pseudonym"))
	assertLinked(t, onlyPost(t, s, "5"), "kf3", t0)
}

func testOtherPseudonymNeverLinks(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, withPseudonym(closed("o-a", "kf1", t0)), withPseudonym(closed("o-b", "kf2", t0.Add(time.Minute))))
	upsert(t, s, post(1, pseudonymOf("o-a"), t0.Add(time.Hour), "a's feedback"), post(2, pseudonymOf("o-c"), t0.Add(time.Hour), "nobody's"))
	assertLinked(t, onlyPost(t, s, "1"), "kf1", t0)
	assertNotLinked(t, onlyPost(t, s, "2"))
}

func testSessionsListPseudonymousPosts(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s,
		withPseudonym(closed("o-a", "kf1", t0)), withPseudonym(closed("o-a", "kf2", t0.Add(3*time.Hour))),
		withPseudonym(closed("o-b", "kf1", t0.Add(time.Minute))),
	)
	upsert(t, s,
		post(1, "o-a", t0.Add(time.Hour), "before pseudonyms"),
		post(2, pseudonymOf("o-a"), t0.Add(2*time.Hour), "through the link"),
		post(3, pseudonymOf("o-a"), t0.Add(4*time.Hour), "after the second"),
		post(4, pseudonymOf("o-b"), t0.Add(2*time.Hour), "b's"),
	)
	got := map[string][]string{}
	for _, sess := range listSessions(t, s, store.SessionQuery{}).Items {
		got[sess.OpenID+"/"+sess.KfAccount] = rawIDs(sess.Posts)
	}
	assertIDs(t, "o-a's first session", got["o-a/kf1"], []string{"2", "1"})
	assertIDs(t, "o-a's second session", got["o-a/kf2"], []string{"3"})
	assertIDs(t, "o-b's session", got["o-b/kf1"], []string{"4"})
	// One page per session: the candidates are gathered per page.
	page := listSessions(t, s, store.SessionQuery{Limit: 1, OpenID: "o-a"})
	if len(page.Items) != 1 {
		t.Fatalf("%d sessions on a page of 1", len(page.Items))
	}
	assertIDs(t, "o-a's newest session alone", rawIDs(page.Items[0].Posts), []string{"3"})
}

func testOpenIDFilterFindsPseudonymousPosts(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, withPseudonym(closed("o-a", "kf1", t0)), closed("o-b", "kf1", t0))
	upsert(t, s,
		post(1, "o-a", t0.Add(time.Hour), "a before pseudonyms"),
		post(2, pseudonymOf("o-a"), t0.Add(2*time.Hour), "a through the link"),
		post(3, pseudonymOf("o-b"), t0.Add(3*time.Hour), "b, whose facts have no pseudonym yet"),
		post(4, pseudonymOf("o-c"), t0.Add(4*time.Hour), "c"),
		post(5, "o-b", t0.Add(5*time.Hour), "b before pseudonyms"),
	)
	checkPostQueries(t, s, []postQuery{
		{"the openid finds posts under it and under the recorded pseudonym", store.PostQuery{OpenID: "o-a"}, []string{"2", "1"}},
		{"the given pseudonym finds posts no fact records it for", store.PostQuery{OpenID: "o-b", Pseudonym: pseudonymOf("o-b")}, []string{"5", "3"}},
		{"without it they are not found", store.PostQuery{OpenID: "o-b"}, []string{"5"}},
		{"a customer without facts is found by the given pseudonym", store.PostQuery{OpenID: "o-c", Pseudonym: pseudonymOf("o-c")}, []string{"4"}},
		{"a pseudonym as openid finds its posts", store.PostQuery{OpenID: pseudonymOf("o-a")}, []string{"2"}},
		{"other filters still apply", store.PostQuery{OpenID: "o-a", Q: "link"}, []string{"2"}},
		{"pagination walks them", store.PostQuery{OpenID: "o-a", Limit: 1}, []string{"2"}},
	})
	first := listPosts(t, s, store.PostQuery{OpenID: "o-a", Limit: 1})
	assertIDs(t, "second page", ids(listPosts(t, s, store.PostQuery{OpenID: "o-a", Limit: 1, Cursor: first.NextCursor}).Items), []string{"1"})
}

func testFillPseudonyms(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, created("o-a", "kf1", t0), closed("o-a", "kf1", t0.Add(time.Minute)), closed("o-b", "kf1", t0))
	// Stored under an older key: it keeps it.
	old := closed("o-c", "kf1", t0)
	old.Pseudonym = "older-key-pseudonym"
	record(t, s, old)
	upsert(t, s,
		post(1, pseudonymOf("o-a"), t0.Add(time.Hour), "a"),
		post(2, pseudonymOf("o-b"), t0.Add(time.Hour), "b"),
		post(3, "older-key-pseudonym", t0.Add(time.Hour), "c under the older key"),
		post(4, pseudonymOf("o-c"), t0.Add(time.Hour), "c under the new key"),
	)
	assertNotLinked(t, onlyPost(t, s, "1"))
	assertLinked(t, onlyPost(t, s, "3"), "kf1", t0)

	var asked []string
	var mu sync.Mutex
	fn := func(o string) string {
		mu.Lock()
		asked = append(asked, o)
		mu.Unlock()
		return pseudonymOf(o)
	}
	n, err := s.FillPseudonyms(ctx(t), fn, 1)
	if err != nil || n != 2 {
		t.Fatalf("FillPseudonyms = %d, %v; want 2 customers (o-a, o-b)", n, err)
	}
	slices.Sort(asked)
	assertIDs(t, "customers computed", asked, []string{"o-a", "o-b"})
	assertLinked(t, onlyPost(t, s, "1"), "kf1", t0.Add(time.Minute))
	assertLinked(t, onlyPost(t, s, "2"), "kf1", t0)
	assertLinked(t, onlyPost(t, s, "3"), "kf1", t0)
	assertNotLinked(t, onlyPost(t, s, "4"))
	if n, err := s.FillPseudonyms(ctx(t), fn, 0); err != nil || n != 0 {
		t.Errorf("a second fill = %d, %v; want nothing left", n, err)
	}
	// New facts without a pseudonym are filled by the next run only.
	record(t, s, closed("o-d", "kf1", t0))
	if n, err := s.FillPseudonyms(ctx(t), fn, 0); err != nil || n != 1 {
		t.Errorf("fill after a new fact = %d, %v; want 1", n, err)
	}
}
