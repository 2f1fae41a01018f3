package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Session facts and the sessions listed from them.

func testSessionsWithLinkedPosts(t *testing.T, backend Backend) {
	s := Open(t, backend)
	upsert(t, s,
		post(1, "o-a", t0.Add(-time.Hour), "before any session"),
		post(2, "o-a", t0.Add(time.Hour), "after the first"),
		post(3, "o-a", t0.Add(90*time.Minute), "also after the first"),
		post(4, "o-a", t0.Add(4*time.Hour), "after the second"),
		post(5, "o-b", t0.Add(2*time.Hour), "b's feedback"),
	)
	record(t, s,
		created("o-a", "kf1", t0), closed("o-a", "kf1", t0.Add(10*time.Minute)),
		created("o-a", "kf2", t0.Add(2*time.Hour)), closed("o-a", "kf2", t0.Add(3*time.Hour)),
		closed("o-b", "kf1", t0.Add(100*time.Minute)),
		created("o-c", "kf3", t0), // still open: not listed
	)
	page := listSessions(t, s, store.SessionQuery{})
	type row struct {
		openid, agent string
		closedAt      time.Time
		startedAt     time.Time
		duration      int64
		posts         []string
	}
	want := []row{
		{"o-a", "kf2", t0.Add(3 * time.Hour), t0.Add(2 * time.Hour), 3600, []string{"4"}},
		{"o-b", "kf1", t0.Add(100 * time.Minute), time.Time{}, 0, []string{"5"}},
		{"o-a", "kf1", t0.Add(10 * time.Minute), t0, 600, []string{"3", "2"}},
	}
	if len(page.Items) != len(want) {
		t.Fatalf("%d sessions, want %d: %+v", len(page.Items), len(want), page.Items)
	}
	for i, w := range want {
		g := page.Items[i]
		if g.OpenID != w.openid || g.KfAccount != w.agent || !g.ClosedAt.Equal(w.closedAt) ||
			!g.StartedAt.Equal(w.startedAt) || g.DurationSeconds != w.duration {
			t.Errorf("session %d = %s/%s started %v closed %v (%ds), want %s/%s started %v closed %v (%ds)", i,
				g.OpenID, g.KfAccount, g.StartedAt, g.ClosedAt, g.DurationSeconds,
				w.openid, w.agent, w.startedAt, w.closedAt, w.duration)
		}
		assertIDs(t, fmt.Sprintf("session %d posts", i), rawIDs(g.Posts), w.posts)
	}
	if len(page.Items) > 0 && len(page.Items[0].Posts) == 1 {
		assertSamePost(t, page.Items[0].Posts[0], post(4, "o-a", t0.Add(4*time.Hour), "after the second"))
	}
}

func testSessionStart(t *testing.T, backend Backend) {
	for _, c := range []struct {
		name  string
		facts []store.SessionFact
		// the session closed at closedAt must start at want (zero: unknown)
		closedAt, want time.Time
	}{
		{"a transfer keeps the first agent's created fact",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf2", t0.Add(5*time.Minute))},
			t0.Add(5 * time.Minute), t0},
		{"without a created fact the start is unknown",
			[]store.SessionFact{closed("o", "kf1", t0)}, t0, time.Time{}},
		{"a created fact before the previous close belongs to that session",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf1", t0.Add(time.Minute)), closed("o", "kf1", t0.Add(time.Hour))},
			t0.Add(time.Hour), time.Time{}},
		{"the next session may start in the second the previous one closed",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf1", t0.Add(time.Minute)),
				created("o", "kf2", t0.Add(time.Minute)), closed("o", "kf2", t0.Add(time.Hour))},
			t0.Add(time.Hour), t0.Add(time.Minute)},
		{"a created fact in the second of the close starts the next session, not this one",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf1", t0.Add(time.Minute)),
				created("o", "kf2", t0.Add(time.Minute))},
			t0.Add(time.Minute), t0},
		{"the latest of several created facts starts the session",
			[]store.SessionFact{created("o", "kf1", t0), created("o", "kf2", t0.Add(time.Minute)), closed("o", "kf2", t0.Add(time.Hour))},
			t0.Add(time.Hour), t0.Add(time.Minute)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Open(t, backend)
			// Reversed: facts arrive in any order.
			facts := slices.Clone(c.facts)
			slices.Reverse(facts)
			record(t, s, facts...)
			for _, sess := range listSessions(t, s, store.SessionQuery{}).Items {
				if sess.ClosedAt.Equal(c.closedAt) {
					if !sess.StartedAt.Equal(c.want) {
						t.Errorf("started_at = %v, want %v", sess.StartedAt, c.want)
					}
					return
				}
			}
			t.Errorf("no session closed at %v", c.closedAt)
		})
	}
}

func testSessionFactIdempotent(t *testing.T, backend Backend) {
	s := Open(t, backend)
	fact := closed("o", "kf1", t0)
	record(t, s, fact, fact)
	record(t, s, fact)
	record(t, s, store.SessionClosedFact(events.SessionClosed{
		WeChatSource: events.WeChatSource{OpenID: "o", CreateTime: t0.Unix()},
		KfAccount:    "kf1",
	}))
	if got := listSessions(t, s, store.SessionQuery{}).Items; len(got) != 1 {
		t.Errorf("%d sessions after recording one fact four times, want 1", len(got))
	}
	// A different agent in the same second is a different fact.
	record(t, s, closed("o", "kf2", t0))
	if got := listSessions(t, s, store.SessionQuery{}).Items; len(got) != 2 {
		t.Errorf("%d sessions, want 2", len(got))
	}
}

func testInvalidSessionFact(t *testing.T, backend Backend) {
	s := Open(t, backend)
	for _, c := range []struct {
		name string
		fact store.SessionFact
	}{
		{"unknown kind", store.SessionFact{Kind: "switched", OpenID: "o", KfAccount: "kf", At: t0}},
		{"no openid", closed("", "kf", t0)},
		{"no time", closed("o", "kf", time.Time{})},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := s.RecordSessions(ctx(t), []store.SessionFact{closed("valid", "kf", t0), c.fact})
			if !errors.Is(err, store.ErrInvalidSessionFact) {
				t.Fatalf("error = %v, want ErrInvalidSessionFact", err)
			}
			if got := listSessions(t, s, store.SessionQuery{}).Items; len(got) != 0 {
				t.Errorf("the valid fact of a rejected batch was written")
			}
		})
	}
}

func testSessionFiltersAndPagination(t *testing.T, backend Backend) {
	s := Open(t, backend)
	var facts []store.SessionFact
	for i := range 9 {
		openid := []string{"o-a", "o-b"}[i%2]
		agent := []string{"kf1", "kf2", "kf3"}[i%3]
		// Pairs share a closed_at, so the id must break ties.
		facts = append(facts, closed(openid, agent, t0.Add(time.Duration(i/2)*time.Hour)))
	}
	record(t, s, facts...)
	checkSessionCounts(t, s, []sessionCount{
		{"no filter", store.SessionQuery{}, 9},
		{"openid", store.SessionQuery{OpenID: "o-a"}, 5},
		{"kf_account", store.SessionQuery{KfAccount: "kf2"}, 3},
		{"openid and kf_account", store.SessionQuery{OpenID: "o-b", KfAccount: "kf2"}, 2},
		{"from is inclusive", store.SessionQuery{From: t0.Add(3 * time.Hour)}, 3},
		{"to is exclusive", store.SessionQuery{To: t0.Add(time.Hour)}, 2},
	})
	t.Run("pagination visits every session once, newest first", func(t *testing.T) {
		walked := walkPages(t, 10, func(cursor string) ([]store.Session, string) {
			page := listSessions(t, s, store.SessionQuery{Limit: 2, Cursor: cursor})
			return page.Items, page.NextCursor
		})
		if len(walked) != 9 {
			t.Fatalf("walked %d sessions, want 9", len(walked))
		}
		type key struct {
			openid, agent string
			at            int64
		}
		seen := map[key]bool{}
		for i, sess := range walked {
			k := key{sess.OpenID, sess.KfAccount, sess.ClosedAt.UnixMicro()}
			if seen[k] {
				t.Errorf("session %+v seen twice", k)
			}
			seen[k] = true
			if i > 0 && sess.ClosedAt.After(walked[i-1].ClosedAt) {
				t.Errorf("session %d closed after session %d", i, i-1)
			}
		}
	})
}
