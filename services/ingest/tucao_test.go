package ingest_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

type tucaoHarness struct {
	t       *testing.T
	fake    *tucaotest.Server
	bus     *bus.Bus
	cursors jetstream.KeyValue
	locks   jetstream.KeyValue
	stream  jetstream.Stream
}

func newTucaoHarness(t *testing.T) *tucaoHarness {
	t.Helper()
	srv := natstest.Run(t, nil)
	b, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx := context.Background()
	if err := b.EnsureStreams(ctx, events.StreamTucao); err != nil {
		t.Fatal(err)
	}
	cursors, _ := b.KeyValue(ctx, bus.BucketCursors)
	locks, _ := b.KeyValue(ctx, bus.BucketLocks)
	stream, _ := b.JS.Stream(ctx, events.StreamTucao)
	fake := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(fake.Close)
	return &tucaoHarness{t: t, fake: fake, bus: b, cursors: cursors, locks: locks, stream: stream}
}

func (h *tucaoHarness) poller(holder string, retries int) *ingest.TucaoPoller {
	h.t.Helper()
	cfg := h.fake.ClientConfig()
	cfg.MaxRetries = retries
	client, err := tucao.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	p, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: holder, Interval: time.Hour},
		client, h.bus, h.cursors, h.locks, nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// published returns the post events in the stream, by subject.
func (h *tucaoHarness) published() map[string][]events.FeedbackPost {
	h.t.Helper()
	out := map[string][]events.FeedbackPost{}
	info, _ := h.stream.Info(context.Background())
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := h.stream.GetMsg(context.Background(), seq)
		if err != nil {
			h.t.Fatal(err)
		}
		p, err := events.Decode[events.FeedbackPost](m.Data)
		if err != nil {
			h.t.Fatal(err)
		}
		if m.Header.Get("Nats-Msg-Id") != events.TucaoPostID(p.ID, p.UpdatedAt) {
			h.t.Errorf("dedup id %q for post %s", m.Header.Get("Nats-Msg-Id"), p.ID)
		}
		out[m.Subject] = append(out[m.Subject], p)
	}
	return out
}

func TestTucaoPollerPublishesNewPostsAndResumesAfterRestart(t *testing.T) {
	h := newTucaoHarness(t)
	h.fake.Generate(250, 1)
	p := h.poller("a", 3)
	res, err := p.PollOnce(context.Background())
	if err != nil || !res.Active || res.Created != 250 {
		t.Fatalf("first poll %+v, %v", res, err)
	}
	got := h.published()
	if len(got[events.SubjectPostCreated]) != 250 || len(got[events.SubjectPostUpdated]) != 0 {
		t.Fatalf("published %d created, %d updated", len(got[events.SubjectPostCreated]), len(got[events.SubjectPostUpdated]))
	}
	first := got[events.SubjectPostCreated][0]
	if first.ProductID != h.fake.ProductID() || first.ID == "" || first.CreatedAt.IsZero() || first.Content == "" {
		t.Errorf("event fields %+v", first)
	}

	// A new process (same KV) publishes only what is new.
	requests := h.fake.RequestCount()
	h.fake.AddPost(tucaotest.PostInput{Content: "新的反馈", OpenID: "o-new"})
	p.Stop(context.Background())
	p2 := h.poller("b", 3)
	res, err = p2.PollOnce(context.Background())
	if err != nil || res.Created != 1 || res.Updated != 0 {
		t.Fatalf("after restart %+v, %v", res, err)
	}
	if n := h.fake.RequestCount() - requests; n > 3 {
		t.Errorf("resuming took %d requests; it should not walk everything again", n)
	}
}

func TestTucaoPollerPublishesChangedPostsAsUpdated(t *testing.T) {
	h := newTucaoHarness(t)
	post := h.fake.AddPost(tucaotest.PostInput{Content: "页面打不开", OpenID: "o-1"})
	p := h.poller("a", 3)
	if _, err := p.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // updated_at has one-second resolution
	if _, err := h.fake.AddReply(post.ID, "已修复，谢谢"); err != nil {
		t.Fatal(err)
	}
	res, err := p.PollOnce(context.Background())
	if err != nil || res.Updated != 1 || res.Created != 0 {
		t.Fatalf("poll after a reply %+v, %v", res, err)
	}
	got := h.published()[events.SubjectPostUpdated]
	if len(got) != 1 || got[0].ReplyCount != 1 || !got[0].Updated || !strings.Contains(string(got[0].Replies), "已修复") {
		t.Fatalf("updated event %+v", got)
	}
	// Polling again changes nothing.
	if res, _ := p.PollOnce(context.Background()); res.Created+res.Updated != 0 {
		t.Fatalf("idle poll published %+v", res)
	}
}

func TestTucaoFailuresLoseNothing(t *testing.T) {
	faults := []tucaotest.FaultKind{tucaotest.FaultServerError, tucaotest.FaultMalformedJSON, tucaotest.FaultRateLimited}
	for _, fault := range faults {
		t.Run(fault.String(), func(t *testing.T) {
			h := newTucaoHarness(t)
			h.fake.Generate(150, 2)
			p := h.poller("a", -1) // no client retries: the poll itself fails
			if _, err := p.PollOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			// New posts arrive, and the next poll's request fails: they must
			// all come with the poll after it, each exactly once.
			h.fake.Generate(150, 3)
			h.fake.FailNext(1, fault)
			if _, err := p.PollOnce(context.Background()); err == nil {
				t.Fatal("a failed request must fail the poll")
			}
			if _, err := p.PollOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			created := h.published()[events.SubjectPostCreated]
			seen := map[string]int{}
			for _, c := range created {
				seen[c.ID]++
			}
			if len(seen) != 300 {
				t.Fatalf("%d distinct posts published, want 300", len(seen))
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("post %s published %d times", id, n)
				}
			}
		})
	}
}

func TestOnlyOneTucaoPollerIsActive(t *testing.T) {
	h := newTucaoHarness(t)
	h.fake.Generate(10, 4)
	a, b := h.poller("a", 3), h.poller("b", 3)
	ra, err := a.PollOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.PollOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !ra.Active || rb.Active {
		t.Fatalf("a active=%v, b active=%v; want only a", ra.Active, rb.Active)
	}
	if err := a.Stop(context.Background()); err != nil { // releases the lease
		t.Fatal(err)
	}
	if rb, _ = b.PollOnce(context.Background()); !rb.Active {
		t.Fatal("b did not take over after a stopped")
	}
}

func TestTucaoBackfillPublishesTheWindow(t *testing.T) {
	h := newTucaoHarness(t)
	clock := tucao.NewFakeClock(time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC))
	h.fake.SetClock(clock)
	for day := 0; day < 5; day++ {
		for i := 0; i < 30; i++ {
			h.fake.AddPost(tucaotest.PostInput{Content: "历史反馈", CreatedAt: clock.Now().Add(time.Duration(day*24)*time.Hour + time.Duration(i)*time.Minute)})
		}
	}
	clock.Set(time.Date(2026, 1, 20, 12, 0, 0, 0, time.UTC))
	cfg := h.fake.ClientConfig()
	client, _ := tucao.New(cfg)
	p, _ := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "backfill"}, client, h.bus, h.cursors, h.locks, nil, nil)
	p.SetClock(clock.Now)
	res, err := p.Backfill(context.Background(), "20260111", "20260112")
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 60 {
		t.Fatalf("backfilled %d posts, want the 60 of two days", res.Created)
	}
	if _, err := p.Backfill(context.Background(), "2026-01-11", "20260112"); err == nil {
		t.Fatal("a malformed date must be an error")
	}
}

func TestTucaoWebhookTriggersAPoll(t *testing.T) {
	h := newTucaoHarness(t)
	cfg := h.fake.ClientConfig()
	client, _ := tucao.New(cfg)
	p, _ := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "a", Interval: time.Hour}, client, h.bus, h.cursors, h.locks, nil, nil)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	hook := httptest.NewServer(p.WebhookHandler())
	defer hook.Close()
	waitFor(t, func() bool { return h.fake.RequestCount() >= 1 }) // the start-up poll
	post := h.fake.AddPost(tucaotest.PostInput{Content: "webhook 来的", OpenID: "o-hook"})
	if err := h.fake.PushWebhook(hook.URL, "post.created", post.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(h.published()[events.SubjectPostCreated]) == 1 })

	for _, bad := range []struct {
		method, body string
		status       int
	}{
		{http.MethodPost, "{not json", 400},
		{http.MethodPost, `{"id":1}`, 400},
		{http.MethodGet, "", 405},
		{http.MethodPost, `{"type":"post.created","x":"` + strings.Repeat("a", 1<<20) + `"}`, 413},
	} {
		req, _ := http.NewRequest(bad.method, hook.URL, bytes.NewBufferString(bad.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != bad.status {
			t.Errorf("%s %.20q: %d, want %d", bad.method, bad.body, resp.StatusCode, bad.status)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
