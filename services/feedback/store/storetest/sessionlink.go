package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// The exact link: a post whose extra names a session (the customInfo the
// feedback link gave Tucao) is linked to that session.

// naming returns p with the extra a post written through the feedback link
// of the session closed by agent at closedAt carries.
func naming(p events.FeedbackPost, openid, agent string, closedAt time.Time) events.FeedbackPost {
	info := feedbacklink.CustomInfo(&feedbacklink.Session{ID: events.SessionID(openid, agent, closedAt), KfAccount: agent, ClosedAt: closedAt})
	p.Extra = json.RawMessage(info)
	return p
}

func assertLinkedBy(t *testing.T, p store.Post, agent string, closedAt time.Time, by string) {
	t.Helper()
	assertLinked(t, p, agent, closedAt)
	if p.Session == nil {
		return
	}
	if p.Session.LinkedBy != by {
		t.Errorf("post %s linked by %q, want %q", p.ID, p.Session.LinkedBy, by)
	}
	if want := events.SessionID("o", agent, closedAt); p.Session.SessionID != want {
		t.Errorf("post %s linked to session id %q, want %q", p.ID, p.Session.SessionID, want)
	}
}

func testNamedSessionWinsOverTheLatest(t *testing.T, backend Backend) {
	s := Open(t, backend)
	first, second := t0.Add(10*time.Minute), t0.Add(time.Hour)
	record(t, s, withPseudonym(created("o", "kf1", t0)), withPseudonym(closed("o", "kf1", first)),
		withPseudonym(created("o", "kf2", first.Add(time.Minute))), withPseudonym(closed("o", "kf2", second)))
	// Both written after the second session closed: the customer used the
	// first session's link for post 1.
	upsert(t, s,
		naming(post(1, pseudonymOf("o"), t0.Add(2*time.Hour), "about kf1"), "o", "kf1", first),
		post(2, pseudonymOf("o"), t0.Add(2*time.Hour), "no link"),
	)
	assertLinkedBy(t, onlyPost(t, s, "1"), "kf1", first, store.LinkedBySessionID)
	assertLinkedBy(t, onlyPost(t, s, "2"), "kf2", second, store.LinkedByOpenID)
	p := onlyPost(t, s, "1")
	if p.Session != nil && !p.Session.StartedAt.Equal(t0) {
		t.Errorf("the named session started at %v, want %v", p.Session.StartedAt, t0)
	}

	got := map[string][]string{}
	for _, sess := range listSessions(t, s, store.SessionQuery{OpenID: "o"}).Items {
		got[sess.KfAccount] = rawIDs(sess.Posts)
		if want := events.SessionID("o", sess.KfAccount, sess.ClosedAt); sess.SessionID != want {
			t.Errorf("session of %s has id %q, want %q", sess.KfAccount, sess.SessionID, want)
		}
	}
	assertIDs(t, "the first session", got["kf1"], []string{"1"})
	assertIDs(t, "the second session", got["kf2"], []string{"2"})
}

func testNamedSessionOfAnotherCustomerNeverLinks(t *testing.T, backend Backend) {
	s := Open(t, backend)
	closedAt := t0.Add(10 * time.Minute)
	record(t, s, withPseudonym(closed("o", "kf1", closedAt)))
	// Someone else copies o's customInfo into their own post.
	upsert(t, s, naming(post(1, pseudonymOf("intruder"), t0.Add(time.Hour), "forged"), "o", "kf1", closedAt))
	assertNotLinked(t, onlyPost(t, s, "1"))
	sessions := listSessions(t, s, store.SessionQuery{}).Items
	if len(sessions) != 1 || len(sessions[0].Posts) != 0 {
		t.Errorf("sessions %+v; want o's session without the forged post", sessions)
	}
}

func testNamedSessionLinksBeyondTheWindowAndLate(t *testing.T, backend Backend) {
	s := Open(t, backend)
	closedAt := t0.Add(10 * time.Minute)
	// The post arrives first, weeks after the session, which is recorded
	// only afterwards: the name links it anyway.
	upsert(t, s, naming(post(1, pseudonymOf("o"), closedAt.Add(30*24*time.Hour), "late"), "o", "kf1", closedAt),
		post(2, pseudonymOf("o"), closedAt.Add(30*24*time.Hour), "late, no name"))
	assertNotLinked(t, onlyPost(t, s, "1"))
	record(t, s, withPseudonym(closed("o", "kf1", closedAt)))
	assertLinkedBy(t, onlyPost(t, s, "1"), "kf1", closedAt, store.LinkedBySessionID)
	assertNotLinked(t, onlyPost(t, s, "2"))
	sessions := listSessions(t, s, store.SessionQuery{}).Items
	if len(sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(sessions))
	}
	assertIDs(t, "the session's posts", rawIDs(sessions[0].Posts), []string{"1"})
}
