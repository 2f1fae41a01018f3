package storetest

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Fixtures, store calls that fail the test on an error, and assertions
// shared by the cases of the contract.

// post builds a post with every kind of field set, so a lost field shows.
func post(id int64, openid string, created time.Time, content string) events.FeedbackPost {
	return events.FeedbackPost{
		Meta:        events.Meta{ProductID: "1234", OccurredAt: created, ReceivedAt: created.Add(time.Second).UTC()},
		ID:          strconv.FormatInt(id, 10),
		OpenID:      openid,
		NickName:    "#゛~",
		AvatarURL:   "https://txc.qq.com/static/a.png",
		Content:     content,
		UserID:      id % 97,
		IsTodo:      true,
		ReplyCount:  1,
		CreatedAt:   created,
		UpdatedAt:   created,
		LastReplyAt: created,
		Images:      json.RawMessage(`[]`),
		Replies:     json.RawMessage(`[{"id":"1","content":"谢谢反馈"}]`),
		Extra:       json.RawMessage(`{"order":"42"}`),
		Raw:         map[string]json.RawMessage{"time": json.RawMessage(`"21分钟前"`)},
	}
}

// version is p as changed at updated.
func version(p events.FeedbackPost, updated time.Time, content string) events.FeedbackPost {
	p.UpdatedAt = updated
	p.Content = content
	p.Updated = true
	return p
}

func upsert(t *testing.T, s store.Store, posts ...events.FeedbackPost) {
	t.Helper()
	if err := s.UpsertPosts(ctx(t), posts); err != nil {
		t.Fatalf("UpsertPosts: %v", err)
	}
}

func record(t *testing.T, s store.Store, facts ...store.SessionFact) {
	t.Helper()
	if err := s.RecordSessions(ctx(t), facts); err != nil {
		t.Fatalf("RecordSessions: %v", err)
	}
}

func created(openid, agent string, at time.Time) store.SessionFact {
	return store.SessionFact{Kind: store.SessionFactCreated, OpenID: openid, KfAccount: agent, At: at}
}

func closed(openid, agent string, at time.Time) store.SessionFact {
	return store.SessionFact{Kind: store.SessionFactClosed, OpenID: openid, KfAccount: agent, At: at}
}

// pseudonymOf stands for feedbacklink's pseudonym: the store only stores
// and compares it.
func pseudonymOf(openid string) string { return "pseudonym-of-" + openid }

func withPseudonym(f store.SessionFact) store.SessionFact {
	f.Pseudonym = pseudonymOf(f.OpenID)
	return f
}

func listPosts(t *testing.T, s store.Store, q store.PostQuery) store.PostPage {
	t.Helper()
	return listPage(t, "ListPosts", s.ListPosts, q)
}

func listSessions(t *testing.T, s store.Store, q store.SessionQuery) store.SessionPage {
	t.Helper()
	return listPage(t, "ListSessions", s.ListSessions, q)
}

// listPage returns the page list answers for q, named what in a failure.
func listPage[Q, P any](t *testing.T, what string, list func(context.Context, Q) (P, error), q Q) P {
	t.Helper()
	page, err := list(ctx(t), q)
	if err != nil {
		t.Fatalf("%s(%+v): %v", what, q, err)
	}
	return page
}

func ids(posts []store.Post) []string {
	return idsOf(posts, func(p store.Post) string { return p.ID })
}

func rawIDs(posts []events.FeedbackPost) []string {
	return idsOf(posts, func(p events.FeedbackPost) string { return p.ID })
}

// idsOf lists the ids of posts in their order; none is an empty list.
func idsOf[P any](posts []P, id func(P) string) []string {
	out := []string{}
	for _, p := range posts {
		out = append(out, id(p))
	}
	return out
}

func assertIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got ids %v, want %v", what, got, want)
	}
}

// assertSamePost compares posts by their JSON, the form the store keeps.
func assertSamePost(t *testing.T, got, want events.FeedbackPost) {
	t.Helper()
	g, err1 := json.Marshal(got)
	w, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil {
		t.Fatalf("marshal posts: %v, %v", err1, err2)
	}
	if string(g) != string(w) {
		t.Errorf("post %s changed in the store:\n got  %s\n want %s", want.ID, g, w)
	}
}

func onlyPost(t *testing.T, s store.Store, id string) store.Post {
	t.Helper()
	page := listPosts(t, s, store.PostQuery{})
	for _, p := range page.Items {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("post %s not listed (got %v)", id, ids(page.Items))
	return store.Post{}
}

// newerFirst reports whether a sorts strictly before b in list order.
func newerFirst(a, b store.Post) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	x, _ := strconv.ParseInt(a.ID, 10, 64)
	y, _ := strconv.ParseInt(b.ID, 10, 64)
	return x > y
}

func assertLinked(t *testing.T, p store.Post, agent string, closedAt time.Time) {
	t.Helper()
	if p.Session == nil {
		t.Fatalf("post %s is not linked, want linked to %s's session closed at %v", p.ID, agent, closedAt)
	}
	if p.Session.KfAccount != agent || !p.Session.ClosedAt.Equal(closedAt) {
		t.Errorf("post %s linked to %s closed at %v, want %s at %v", p.ID, p.Session.KfAccount, p.Session.ClosedAt, agent, closedAt)
	}
}

func assertNotLinked(t *testing.T, p store.Post) {
	t.Helper()
	if p.Session != nil {
		t.Errorf("post %s linked to %+v, want no link", p.ID, *p.Session)
	}
}

// postQuery is a case of a table of post queries: q lists the posts of
// ids want, in that order.
type postQuery struct {
	name string
	q    store.PostQuery
	want []string
}

// checkPostQueries runs each case against s as a subtest.
func checkPostQueries(t *testing.T, s store.Store, cases []postQuery) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertIDs(t, "posts", ids(listPosts(t, s, c.q).Items), c.want)
		})
	}
}

// sessionCount is a case of a table of session queries: q lists want
// sessions.
type sessionCount struct {
	name string
	q    store.SessionQuery
	want int
}

// checkSessionCounts runs each case against s as a subtest.
func checkSessionCounts(t *testing.T, s store.Store, cases []sessionCount) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := len(listSessions(t, s, c.q).Items); got != c.want {
				t.Errorf("%d sessions, want %d", got, c.want)
			}
		})
	}
}

// walkPages lists every page from the first: page answers the items after
// cursor ("" for the first page) and the cursor of the next page, "" after
// the last. The test fails when the walk takes more than maxPages+1 pages.
func walkPages[T any](t *testing.T, maxPages int, page func(cursor string) ([]T, string)) []T {
	t.Helper()
	var walked []T
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > maxPages {
			t.Fatal("pagination does not end")
		}
		items, next := page(cursor)
		walked = append(walked, items...)
		if next == "" {
			return walked
		}
		cursor = next
	}
}
