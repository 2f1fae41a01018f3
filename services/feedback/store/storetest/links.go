package storetest

import (
	"testing"
	"time"

	"github.com/kefu-io/kefu/services/feedback/store"
)

// Linking a post to its customer's latest session closed before it,
// within the link window.

func testPostAfterSessionIsLinked(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, created("o", "kf1@acc", t0), closed("o", "kf1@acc", t0.Add(10*time.Minute)))
	upsert(t, s, post(1, "o", t0.Add(time.Hour), "thanks"))
	p := onlyPost(t, s, "1")
	assertLinked(t, p, "kf1@acc", t0.Add(10*time.Minute))
	if p.Session != nil && !p.Session.StartedAt.Equal(t0) {
		t.Errorf("linked session started_at = %v, want %v", p.Session.StartedAt, t0)
	}
}

func testPostBeforeSessionIsNotLinked(t *testing.T, backend Backend) {
	s := Open(t, backend)
	upsert(t, s, post(1, "o", t0, "before"), post(2, "o", t0.Add(10*time.Minute), "during"),
		post(3, "o", t0.Add(20*time.Minute), "at the close"))
	record(t, s, created("o", "kf1", t0.Add(5*time.Minute)), closed("o", "kf1", t0.Add(20*time.Minute)))
	for _, id := range []string{"1", "2", "3"} {
		assertNotLinked(t, onlyPost(t, s, id))
	}
}

func testLateSessionFactLinks(t *testing.T, backend Backend) {
	s := Open(t, backend)
	upsert(t, s, post(1, "o", t0.Add(time.Hour), "feedback"))
	assertNotLinked(t, onlyPost(t, s, "1"))
	record(t, s, closed("o", "kf1", t0.Add(30*time.Minute)))
	assertLinked(t, onlyPost(t, s, "1"), "kf1", t0.Add(30*time.Minute))
	// The created fact arrives last and gives the link its start.
	record(t, s, created("o", "kf1", t0))
	if p := onlyPost(t, s, "1"); p.Session == nil || !p.Session.StartedAt.Equal(t0) {
		t.Errorf("late created fact: link %+v, want started_at %v", p.Session, t0)
	}
}

func testLatestSessionWins(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s,
		closed("o", "kf1", t0),
		closed("o", "kf2", t0.Add(time.Hour)),
		closed("o", "kf3", t0.Add(3*time.Hour)), // after the post
	)
	upsert(t, s, post(1, "o", t0.Add(2*time.Hour), "x"))
	assertLinked(t, onlyPost(t, s, "1"), "kf2", t0.Add(time.Hour))
}

func testLinkWindow(t *testing.T, backend Backend) {
	for _, c := range []struct {
		name   string
		opts   []store.Option
		after  time.Duration
		linked bool
	}{
		{"within the default 7 days", nil, 7 * 24 * time.Hour, true},
		{"beyond the default 7 days", nil, 7*24*time.Hour + time.Second, false},
		{"within a configured window", []store.Option{store.WithLinkWindow(time.Hour)}, time.Hour, true},
		{"beyond a configured window", []store.Option{store.WithLinkWindow(time.Hour)}, time.Hour + time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Open(t, backend, c.opts...)
			record(t, s, closed("o", "kf1", t0))
			upsert(t, s, post(1, "o", t0.Add(c.after), "x"))
			page := listPosts(t, s, store.PostQuery{})
			if len(page.Items) != 1 {
				t.Fatalf("%d posts, want 1", len(page.Items))
			}
			if c.linked {
				assertLinked(t, page.Items[0], "kf1", t0)
			} else {
				assertNotLinked(t, page.Items[0])
			}
		})
	}
}

func testOtherCustomerNeverLinks(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, closed("o-other", "kf1", t0))
	upsert(t, s, post(1, "o", t0.Add(time.Minute), "x"), post(2, "", t0.Add(time.Minute), "anonymous"))
	assertNotLinked(t, onlyPost(t, s, "1"))
	assertNotLinked(t, onlyPost(t, s, "2"))
}
