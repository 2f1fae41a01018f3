package storetest

import (
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
	page, err := s.ListPosts(ctx(t), q)
	if err != nil {
		t.Fatalf("ListPosts(%+v): %v", q, err)
	}
	return page
}

func listSessions(t *testing.T, s store.Store, q store.SessionQuery) store.SessionPage {
	t.Helper()
	page, err := s.ListSessions(ctx(t), q)
	if err != nil {
		t.Fatalf("ListSessions(%+v): %v", q, err)
	}
	return page
}

func ids(posts []store.Post) []string {
	out := []string{}
	for _, p := range posts {
		out = append(out, p.ID)
	}
	return out
}

func rawIDs(posts []events.FeedbackPost) []string {
	out := []string{}
	for _, p := range posts {
		out = append(out, p.ID)
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
