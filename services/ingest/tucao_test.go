package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
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
	b, _ := bustest.Open(t, bustest.Streams(events.StreamTucao))
	ctx := context.Background()
	cursors, _ := b.KeyValue(ctx, bus.BucketCursors)
	locks, _ := b.KeyValue(ctx, bus.BucketLocks)
	stream, _ := b.Stream(ctx, events.StreamTucao)
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
	clock := tucao.NewFakeClock(time.Now()) // the fake Tucao's, which stamps posts and replies
	h.fake.SetClock(clock)
	post := h.fake.AddPost(tucaotest.PostInput{Content: "页面打不开", OpenID: "o-1"})
	p := h.poller("a", 3)
	if _, err := p.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(1100 * time.Millisecond) // updated_at has one-second resolution
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
	if _, err := p.Backfill(context.Background(), "2026-1-11", "2026-01-12"); err == nil {
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
	natstest.Eventually(t, 15*time.Second, func() bool { return h.fake.RequestCount() >= 1 }, "the start-up poll's request") // the start-up poll
	post := h.fake.AddPost(tucaotest.PostInput{Content: "webhook 来的", OpenID: "o-hook"})
	if err := h.fake.PushWebhook(hook.URL, "post.created", post.ID); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, func() bool { return len(h.published()[events.SubjectPostCreated]) == 1 }, "the webhook's post published")

	for _, bad := range []struct {
		method, body string
		status       int
	}{
		{http.MethodPost, "{not json", 400},
		{http.MethodPost, `{"id":1}`, 400},
		{http.MethodGet, "", 405},
		{http.MethodPost, `{"type":"post.created","x":"` + strings.Repeat("a", ingest.MaxWebhookBody) + `"}`, 413},
	} {
		req, _ := http.NewRequest(bad.method, hook.URL, bytes.NewBufferString(bad.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != bad.status {
			t.Errorf("%s %.20q: %d, want %d", bad.method, bad.body, resp.StatusCode, bad.status)
			continue
		}
		httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, body)
	}
}

// webhookRig is a started poller with its webhook behind a real HTTP
// server, a metrics registry, a fake clock for the kick limiter, and a gate
// between the Tucao client and the fake Tucao that lets one request through
// per token, so a test decides when each poll may finish.
type webhookRig struct {
	*tucaoHarness
	poller *ingest.TucaoPoller
	reg    *prometheus.Registry
	clock  *tucao.FakeClock
	gate   *webhookGate
	hook   *httptest.Server
}

func newWebhookRig(t *testing.T, secret string) *webhookRig {
	t.Helper()
	h := newTucaoHarness(t)
	h.fake.Generate(5, 11)
	gate := newWebhookGate(t, h.fake.URL())
	cfg := h.fake.ClientConfig()
	cfg.BaseURL = gate.URL()
	cfg.MaxRetries = -1
	client, err := tucao.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "a", Interval: time.Hour},
		client, h.bus, h.cursors, h.locks, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	clock := tucao.NewFakeClock(time.Now())
	p.SetClock(clock.Now)
	mux := http.NewServeMux()
	p.RegisterWebhook(mux, secret)
	hook := httptest.NewServer(mux)
	t.Cleanup(hook.Close)
	r := &webhookRig{tucaoHarness: h, poller: p, reg: reg, clock: clock, gate: gate, hook: hook}

	// The start-up poll: one request, the five posts published.
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	gate.allow(1)
	natstest.Eventually(t, 15*time.Second, func() bool { return r.polls() == 1 }, "the start-up poll")
	if n := len(h.published()[events.SubjectPostCreated]); n != 5 || h.fake.RequestCount() != 1 {
		t.Fatalf("start-up poll: %d posts published, %d requests; want 5, 1", n, h.fake.RequestCount())
	}
	return r
}

// push sends body to the webhook at path and returns the status.
func (r *webhookRig) push(method, path, body string) int {
	r.t.Helper()
	return r.send(method, path, strings.NewReader(body))
}

// pushChunked is push without a Content-Length, so the handler learns the
// size only by reading.
func (r *webhookRig) pushChunked(method, path, body string) int {
	r.t.Helper()
	return r.send(method, path, io.MultiReader(strings.NewReader(body)))
}

func (r *webhookRig) send(method, path string, body io.Reader) int {
	r.t.Helper()
	req, err := http.NewRequest(method, r.hook.URL+path, body)
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// polls is the number of polls that finished (kefu_tucao_polls_total).
func (r *webhookRig) polls() int {
	return int(tucaoCounter(r.t, r.reg, "kefu_tucao_polls_total", "outcome", "ok"))
}

// kicks is kefu_tucao_webhook_kicks_total{result}.
func (r *webhookRig) kicks(result string) int {
	return int(tucaoCounter(r.t, r.reg, "kefu_tucao_webhook_kicks_total", "result", result))
}

// stopAndCount stops the poller (a poll held at the gate is cancelled
// there, before the fake sees it) and returns how many polls reached the
// gate and how many requests the fake Tucao answered.
func (r *webhookRig) stopAndCount() (atGate, atFake int) {
	r.t.Helper()
	if err := r.poller.Stop(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	return r.gate.arrived(), r.fake.RequestCount()
}

func tucaoCounter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// tucaoSeries counts every series in the registry.
func tucaoSeries(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		n += len(f.GetMetric())
	}
	return n
}

// webhookGate is a reverse proxy that holds every request until the test
// allows it through, and counts the requests that arrived.
type webhookGate struct {
	srv    *httptest.Server
	tokens chan struct{}
	mu     sync.Mutex
	count  int
}

func newWebhookGate(t *testing.T, target string) *webhookGate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &webhookGate{tokens: make(chan struct{}, 16)}
	proxy := httputil.NewSingleHostReverseProxy(u)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.count++
		g.mu.Unlock()
		select {
		case <-g.tokens:
			proxy.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *webhookGate) URL() string { return g.srv.URL }
func (g *webhookGate) allow(n int) {
	for range n {
		g.tokens <- struct{}{}
	}
}
func (g *webhookGate) arrived() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.count
}

func TestTucaoWebhookFloodCostsOnePollPerTenSeconds(t *testing.T) {
	r := newWebhookRig(t, "")
	start := r.clock.Now()

	// The first webhook asks for a poll, which the gate holds while the
	// flood arrives: had the flood asked for more, the poll loop would
	// owe another one the moment this one ends.
	if code := r.push(http.MethodPost, "/tucao/webhook", `{"id":"1","type":"post.created"}`); code != 200 {
		t.Fatalf("first webhook: %d", code)
	}
	natstest.Eventually(t, 15*time.Second, func() bool { return r.gate.arrived() == 2 }, "a second request at the gate")
	for i := 1; i < 300; i++ {
		r.clock.Advance(3 * time.Millisecond) // 300 webhooks inside one second
		if code := r.push(http.MethodPost, "/tucao/webhook", `{"id":"1","type":"post.created"}`); code != 200 {
			t.Fatalf("webhook %d: %d; a throttled webhook is still a success for Tucao", i, code)
		}
	}
	if r.clock.Now().Sub(start) >= time.Second {
		t.Fatal("the flood took longer than a second of the poller's clock")
	}
	if polled, throttled := r.kicks("polled"), r.kicks("throttled"); polled != 1 || throttled != 299 {
		t.Fatalf("kicks: %d polled, %d throttled; want 1, 299", polled, throttled)
	}
	r.gate.allow(1)
	natstest.Eventually(t, 15*time.Second, func() bool { return r.polls() == 2 }, "a second poll")
	if n := r.fake.RequestCount(); n != 2 {
		t.Fatalf("the fake Tucao saw %d requests after the flood, want 2 (start-up and one poll)", n)
	}

	// Ten seconds after the first webhook, the next one polls again, and
	// picks up a post written meanwhile: that poll is the only one after
	// the flood's.
	post := r.fake.AddPost(tucaotest.PostInput{Content: "十秒后", OpenID: "o-later"})
	r.clock.Set(start.Add(ingest.WebhookPollEvery))
	if code := r.push(http.MethodPost, "/tucao/webhook", `{"id":"2","type":"reply.created"}`); code != 200 {
		t.Fatalf("webhook after 10 s: %d", code)
	}
	if polled := r.kicks("polled"); polled != 2 {
		t.Fatalf("the webhook 10 s later did not ask for a poll (%d polled)", polled)
	}
	natstest.Eventually(t, 15*time.Second, func() bool { return r.gate.arrived() == 3 }, "a third request at the gate")
	r.gate.allow(1)
	natstest.Eventually(t, 15*time.Second, func() bool { return r.polls() == 3 }, "a third poll")
	created := r.published()[events.SubjectPostCreated]
	if len(created) != 6 || created[5].ID != post.ID {
		t.Fatalf("%d posts published, want the 5 of the start-up poll and then %s", len(created), post.ID)
	}
	if atGate, atFake := r.stopAndCount(); atGate != 3 || atFake != 3 {
		t.Fatalf("%d polls started, %d reached the fake Tucao; want 3 and 3", atGate, atFake)
	}
}

func TestTucaoWebhookTypesCreateNoMetricSeries(t *testing.T) {
	r := newWebhookRig(t, "")
	before := tucaoSeries(t, r.reg)
	// A webhook of exactly the largest size, without a Content-Length, is
	// accepted (and asks for the poll the gate holds below).
	first := `{"type":"other-1"}`
	first += strings.Repeat(" ", ingest.MaxWebhookBody-len(first))
	if code := r.pushChunked(http.MethodPost, "/tucao/webhook", first); code != 200 {
		t.Fatalf("a webhook of exactly %d bytes: %d", ingest.MaxWebhookBody, code)
	}
	if code := r.push(http.MethodPost, "/tucao/webhook", `{"type":"other-2"}`); code != 200 {
		t.Fatalf("other-2: %d", code)
	}

	rng := rand.New(rand.NewPCG(14, 300))
	alphabet := []rune("abcxyz.-_0123吐槽é\u2028")
	for i := range 300 {
		// Random types, ASCII and not; every tenth just under the body limit.
		var typ string
		if i%10 == 0 {
			typ = strconv.Itoa(i) + strings.Repeat("t", ingest.MaxWebhookBody-64)
		} else {
			var b strings.Builder
			for range 1 + rng.IntN(8000) { // at most 6 bytes each in JSON
				b.WriteRune(alphabet[rng.IntN(len(alphabet))])
			}
			typ = b.String()
		}
		body, _ := json.Marshal(map[string]string{"id": strconv.Itoa(i), "type": typ})
		if code := r.push(http.MethodPost, "/tucao/webhook", string(body)); code != 200 {
			t.Fatalf("webhook %d (%d bytes): %d", i, len(body), code)
		}
	}
	if after := tucaoSeries(t, r.reg); after != before {
		t.Fatalf("300 random webhook types took the registry from %d to %d series", before, after)
	}
	if n := tucaoCounter(t, r.reg, "kefu_tucao_webhooks_total", "type", "other"); n != 302 {
		t.Fatalf("kefu_tucao_webhooks_total{type=\"other\"} = %v, want 302", n)
	}
	for _, typ := range []string{"post.created", "reply.created", "webhook.test"} {
		if code := r.push(http.MethodPost, "/tucao/webhook", `{"type":"`+typ+`"}`); code != 200 {
			t.Fatalf("%s: %d", typ, code)
		}
		if after := tucaoSeries(t, r.reg); after != before {
			t.Fatalf("a %s webhook took the registry from %d to %d series", typ, before, after)
		}
		if n := tucaoCounter(t, r.reg, "kefu_tucao_webhooks_total", "type", typ); n != 1 {
			t.Errorf("kefu_tucao_webhooks_total{type=%q} = %v, want 1", typ, n)
		}
	}
	// The webhooks themselves publish nothing: only the start-up poll's posts.
	r.gate.allow(1) // the one poll the first webhook asked for
	natstest.Eventually(t, 15*time.Second, func() bool { return r.polls() == 2 }, "a second poll")
	if n := len(r.published()[events.SubjectPostCreated]); n != 5 {
		t.Fatalf("%d posts in the stream, want the 5 of the start-up poll", n)
	}
	if atGate, atFake := r.stopAndCount(); atGate != 2 || atFake != 2 {
		t.Fatalf("%d polls started, %d reached the fake; want 2, 2", atGate, atFake)
	}
}

func TestTucaoWebhookRefusalsTriggerNothing(t *testing.T) {
	const secret = "s3cret-path-segment_0123"
	oversize := `{"type":"post.created","x":"` + strings.Repeat("a", ingest.MaxWebhookBody) + `"}`
	justOver := `{"type":"post.created"}`
	justOver += strings.Repeat(" ", ingest.MaxWebhookBody+1-len(justOver))
	tests := []struct {
		name, secret, method, path, body string
		want                             int
		chunked                          bool
	}{
		{"a body over 64 KiB is refused", "", http.MethodPost, "/tucao/webhook", oversize, 413, false},
		{"a body one byte over 64 KiB is refused", "", http.MethodPost, "/tucao/webhook", justOver, 413, false},
		{"a body over 64 KiB without a Content-Length is refused", "", http.MethodPost, "/tucao/webhook", justOver, 413, true},
		{"malformed JSON is refused", "", http.MethodPost, "/tucao/webhook", "{not json", 400, false},
		{"a webhook without a type is refused", "", http.MethodPost, "/tucao/webhook", `{"id":1}`, 400, false},
		{"GET is not a webhook", "", http.MethodGet, "/tucao/webhook", "", 405, false},
		{"with a secret the plain path is not served", secret, http.MethodPost, "/tucao/webhook", `{"type":"post.created"}`, 404, false},
		{"with a secret the plain path with a slash is not served", secret, http.MethodPost, "/tucao/webhook/", `{"type":"post.created"}`, 404, false},
		{"a wrong secret is not served", secret, http.MethodPost, "/tucao/webhook/s3cret-path-segment_0124", `{"type":"post.created"}`, 404, false},
		{"a prefix of the secret is not served", secret, http.MethodPost, "/tucao/webhook/s3cret-path", `{"type":"post.created"}`, 404, false},
		{"the secret with more path is not served", secret, http.MethodPost, "/tucao/webhook/" + secret + "/x", `{"type":"post.created"}`, 404, false},
		{"a wrong secret says 404 to any method", secret, http.MethodGet, "/tucao/webhook/nope", "", 404, false},
		{"the right secret still checks the method", secret, http.MethodGet, "/tucao/webhook/" + secret, "", 405, false},
		{"the right secret still checks the size", secret, http.MethodPost, "/tucao/webhook/" + secret, oversize, 413, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newWebhookRig(t, tt.secret)
			before := tucaoSeries(t, r.reg)
			send := r.push
			if tt.chunked {
				send = r.pushChunked
			}
			if code := send(tt.method, tt.path, tt.body); code != tt.want {
				t.Fatalf("%s %s: %d, want %d", tt.method, tt.path, code, tt.want)
			}
			if after := tucaoSeries(t, r.reg); after != before {
				t.Errorf("a refused webhook took the registry from %d to %d series", before, after)
			}
			// The refusal asked for no poll: the limiter is untouched, so
			// the valid webhook that follows asks for one, and that poll
			// is the only one after the start-up poll.
			post := r.fake.AddPost(tucaotest.PostInput{Content: "哨兵", OpenID: "o-sentinel"})
			path := "/tucao/webhook"
			if tt.secret != "" {
				path += "/" + tt.secret
			}
			if code := r.push(http.MethodPost, path, `{"type":"post.created"}`); code != 200 {
				t.Fatalf("the valid webhook after it: %d", code)
			}
			if polled, throttled := r.kicks("polled"), r.kicks("throttled"); polled != 1 || throttled != 0 {
				t.Fatalf("kicks: %d polled, %d throttled; want 1, 0", polled, throttled)
			}
			r.gate.allow(1)
			natstest.Eventually(t, 15*time.Second, func() bool { return r.polls() == 2 }, "a second poll")
			created := r.published()[events.SubjectPostCreated]
			if len(created) != 6 || created[5].ID != post.ID {
				t.Fatalf("%d posts published, want the start-up poll's 5 and then the sentinel", len(created))
			}
			if atGate, atFake := r.stopAndCount(); atGate != 2 || atFake != 2 {
				t.Fatalf("%d polls started, %d reached the fake; want 2, 2", atGate, atFake)
			}
		})
	}
}

// publishedOnce checks that every post of want was published as created
// exactly once (the stream holds one message per post) and nothing else was.
func (h *tucaoHarness) publishedOnce(want map[string]bool) {
	h.t.Helper()
	count := map[string]int{}
	for _, p := range h.published()[events.SubjectPostCreated] {
		count[p.ID]++
	}
	missing, doubled, extra := 0, 0, 0
	for id := range want {
		switch count[id] {
		case 0:
			missing++
		case 1:
		default:
			doubled++
		}
	}
	for id := range count {
		if !want[id] {
			extra++
		}
	}
	if missing+doubled+extra > 0 {
		h.t.Fatalf("of %d posts: %d never published, %d published more than once, %d unexpected", len(want), missing, doubled, extra)
	}
}

// maxPerMinute is the most requests any 60-second window of times holds.
func maxPerMinute(times []time.Time) int {
	most := 0
	for i, start := range times {
		n := 0
		for _, t := range times[i:] {
			if t.Sub(start) < time.Minute {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// The operator's test of a restart after downtime: kefu stopped, 2,600 posts arrive, kefu
// restarted. Each poll reads at most 20 pages, so the restarted poller
// needs several polls; every one of them first publishes what arrived
// since the last, then reads on where the walk stopped, until it meets
// the posts read before the downtime. Polls run back to back (as webhook
// kicks would make them), so only the client's limiter keeps the fake's
// 100 requests a minute; the fake's clock moves by itself when the limiter
// waits, so the test takes seconds.
func TestTucaoPollerCatchesUpAfterDowntime(t *testing.T) {
	h := newTucaoHarness(t)
	clock := tucao.NewFakeClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	h.fake.SetClock(clock)
	h.fake.SetRateLimit(tucao.DefaultRequestsPerMinute)
	poller := func(holder string) *ingest.TucaoPoller {
		client, err := tucao.New(h.fake.ClientConfig()) // the fake's clock drives timestamps and the limiter
		if err != nil {
			t.Fatal(err)
		}
		p, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: holder, Interval: time.Minute},
			client, h.bus, h.cursors, h.locks, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.SetClock(clock.Now)
		return p
	}
	want := map[string]bool{}
	for _, post := range h.fake.Generate(250, 7) {
		want[post.ID] = true
	}
	a := poller("before")
	if res, err := a.PollOnce(context.Background()); err != nil || res.Created != 250 || res.Behind {
		t.Fatalf("first poll %+v, %v", res, err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Downtime: 2,600 posts over 26 hours.
	for i := range 2600 {
		clock.Advance(36 * time.Second)
		want[h.fake.AddPost(tucaotest.PostInput{Content: "停机期间的反馈 " + strconv.Itoa(i)}).ID] = true
	}
	clock.SetAutoAdvance(true)
	b := poller("after")
	created, polls := 0, 0
	for {
		polls++
		if polls > 10 {
			t.Fatalf("still behind after %d polls", polls-1)
		}
		// Posts that arrive while the poller catches up are published by
		// the very next poll, before the rest of the backlog.
		fresh := h.fake.AddPost(tucaotest.PostInput{Content: "追赶期间的新反馈"})
		want[fresh.ID] = true
		res, err := b.PollOnce(context.Background())
		if err != nil {
			t.Fatalf("poll %d: %v", polls, err)
		}
		created += res.Created
		if res.Pages > 20 {
			t.Errorf("poll %d made %d requests, over its 20 pages", polls, res.Pages)
		}
		if !slices.ContainsFunc(h.published()[events.SubjectPostCreated], func(p events.FeedbackPost) bool { return p.ID == fresh.ID }) {
			t.Fatalf("poll %d did not publish the post that arrived just before it", polls)
		}
		if !res.Behind {
			break
		}
	}
	t.Logf("caught up in %d polls, %d requests, at most %d in a minute", polls, h.fake.RequestCount(), maxPerMinute(h.fake.RequestTimes()))
	if polls < 2 {
		t.Fatalf("caught up in %d poll; the test needs a backlog larger than one poll", polls)
	}
	if created != len(want)-250 {
		t.Errorf("the restarted poller published %d posts, want %d", created, len(want)-250)
	}
	h.publishedOnce(want)
	// Caught up: polls read the new posts and go on with the rescan pass
	// (the 2,600 posts are within its 7 days), and publish nothing twice.
	// Back to back, they spend more than a minute's budget: the limiter
	// must spread them.
	for range 6 {
		if res, err := b.PollOnce(context.Background()); err != nil || res.Created != 0 || res.Updated != 0 || res.Behind {
			t.Fatalf("poll after catching up %+v, %v", res, err)
		}
	}
	times := h.fake.RequestTimes()
	most := maxPerMinute(times)
	t.Logf("%d requests in all over %v, at most %d in a minute", len(times), times[len(times)-1].Sub(times[0]), most)
	if len(times) <= tucao.DefaultRequestsPerMinute {
		t.Fatalf("only %d requests: the budget was not put to the test", len(times))
	}
	if most > tucao.DefaultRequestsPerMinute {
		t.Errorf("%d requests within 60 s; Tucao allows %d", most, tucao.DefaultRequestsPerMinute)
	}
	h.publishedOnce(want)
}

// Replies on a post 5 days old are seen by the rescan (default window 7
// days); one on a post 9 days old is not re-read by polls — Tucao lists
// posts by creation — until a webhook names the post.
func TestTucaoRescanWindowAndWebhookHints(t *testing.T) {
	h := newTucaoHarness(t)
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	clock := tucao.NewFakeClock(now.Add(-9 * 24 * time.Hour))
	h.fake.SetClock(clock)
	old := h.fake.AddPost(tucaotest.PostInput{Content: "九天前的反馈"})
	clock.Set(now.Add(-5 * 24 * time.Hour))
	recent := h.fake.AddPost(tucaotest.PostInput{Content: "五天前的反馈"})
	clock.Set(now)
	for range 150 { // newer posts: the rescan reaches the 5-day post on a second page
		clock.Advance(time.Minute)
		h.fake.AddPost(tucaotest.PostInput{Content: "最近的反馈"})
	}
	client, _ := tucao.New(h.fake.ClientConfig())
	p, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "a", Interval: time.Hour},
		client, h.bus, h.cursors, h.locks, nil, nil) // RescanWindow left at its default
	if err != nil {
		t.Fatal(err)
	}
	p.SetClock(clock.Now)
	if res, err := p.PollOnce(context.Background()); err != nil || res.Created != 152 {
		t.Fatalf("first poll %+v, %v", res, err)
	}

	clock.Advance(time.Hour)
	for _, id := range []string{old.ID, recent.ID} {
		if _, err := h.fake.AddReply(id, "您好，已处理"); err != nil {
			t.Fatal(err)
		}
	}
	updated := func() map[string]int {
		out := map[string]int{}
		for _, p := range h.published()[events.SubjectPostUpdated] {
			out[p.ID]++
		}
		return out
	}
	res, err := p.PollOnce(context.Background())
	if err != nil || res.Updated != 1 {
		t.Fatalf("poll after the replies %+v, %v; want the 5-day-old post updated", res, err)
	}
	if got := updated(); got[recent.ID] != 1 || got[old.ID] != 0 {
		t.Fatalf("updates published %v; want %s (5 days old) once and not %s (9 days old)", got, recent.ID, old.ID)
	}

	// The webhook for the reply names the old post: the next poll re-reads
	// it, one request.
	hook := httptest.NewServer(p.WebhookHandler())
	defer hook.Close()
	if err := h.fake.PushWebhook(hook.URL, tucaotest.EventReplyCreated, old.ID); err != nil {
		t.Fatal(err)
	}
	if res, err = p.PollOnce(context.Background()); err != nil || res.Updated != 1 {
		t.Fatalf("poll after the webhook %+v, %v; want the 9-day-old post updated", res, err)
	}
	if got := updated(); got[recent.ID] != 1 || got[old.ID] != 1 {
		t.Fatalf("updates published %v; want each post once", got)
	}

	// A hinted id must be a Tucao id; anything else is refused and
	// queues nothing.
	for _, id := range []string{`"-1"`, `"+153985339090723620"`, `"99999999999999999999"`, `"1e9"`, `"../x"`, `{}`, `1.5`, `" 12"`} {
		body := `{"type":"reply.created","payload":{"post":{"id":` + id + `}}}`
		resp, err := http.Post(hook.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("post id %s: %d, want 400", id, resp.StatusCode)
		} else if prob := httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, answer); prob.Param != "payload.post.id" {
			t.Errorf("post id %s: param %q, want payload.post.id", id, prob.Param)
		}
	}
	if err := p.Hint("0"); err == nil {
		t.Error("Hint accepted id 0")
	}
}

// --from D --to D is the day D: the poller asks Tucao for to=D+1.
func TestTucaoBackfillOfOneDay(t *testing.T) {
	h := newTucaoHarness(t)
	cst := time.FixedZone("CST", 8*3600)
	clock := tucao.NewFakeClock(time.Date(2026, 1, 10, 0, 0, 0, 0, cst))
	h.fake.SetClock(clock)
	days := map[string]map[string]bool{}
	for day := 10; day <= 14; day++ {
		for _, hm := range [][2]int{{0, 0}, {9, 30}, {23, 59}} {
			at := time.Date(2026, 1, day, hm[0], hm[1], 0, 0, cst)
			post := h.fake.AddPost(tucaotest.PostInput{Content: "历史反馈", CreatedAt: at})
			d := at.Format("20060102")
			if days[d] == nil {
				days[d] = map[string]bool{}
			}
			days[d][post.ID] = true
		}
	}
	clock.Set(time.Date(2026, 2, 1, 12, 0, 0, 0, cst))
	client, _ := tucao.New(h.fake.ClientConfig())
	p, _ := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "backfill"}, client, h.bus, h.cursors, h.locks, nil, nil)
	p.SetClock(clock.Now)
	res, err := p.Backfill(context.Background(), "20260112", "20260112")
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 3 {
		t.Fatalf("backfill of January 12th published %d posts, want its 3", res.Created)
	}
	h.publishedOnce(days["20260112"])
	if _, err := p.Backfill(context.Background(), "20260113", "20260112"); err == nil {
		t.Error("--to before --from must be an error")
	}
}

// gatedLister holds every Walk until the test lets it go on.
type gatedLister struct {
	ingest.PostLister
	entered chan struct{}
	release chan struct{}
}

func (g *gatedLister) Walk(ctx context.Context, opt tucao.ListOptions, maxPages int, fn func(tucao.Post) (bool, error)) (int, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.PostLister.Walk(ctx, opt, maxPages, fn)
}

// A poller paused mid-poll loses its lease; another takes over and moves
// the walk on. When the paused one wakes, its write of the position it
// read before the pause loses: the stored position stays the newer one.
func TestStaleTucaoPollerCannotMoveTheWalkBack(t *testing.T) {
	h := newTucaoHarness(t)
	h.fake.Generate(450, 3)
	newPoller := func(holder string, lister ingest.PostLister) *ingest.TucaoPoller {
		p, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: holder, Interval: time.Hour, MaxPagesPerPoll: 2},
			lister, h.bus, h.cursors, h.locks, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	client, _ := tucao.New(h.fake.ClientConfig())
	gate := &gatedLister{PostLister: client, entered: make(chan struct{}), release: make(chan struct{})}
	stale := newPoller("stale", gate)
	done := make(chan error, 1)
	go func() {
		_, err := stale.PollOnce(context.Background())
		done <- err
	}()
	<-gate.entered // holds the lease and has read the (empty) walk position

	// Its lease runs out while it is paused (the record is gone, as when
	// it expires), and another poller walks two pages.
	if err := h.locks.Delete(context.Background(), "tucao-poller-"+events.Token(h.fake.ProductID())); err != nil {
		t.Fatal(err)
	}
	fresh := newPoller("fresh", client)
	res, err := fresh.PollOnce(context.Background())
	if err != nil || !res.Active || res.Created != 200 || !res.Behind {
		t.Fatalf("the new holder's poll %+v, %v", res, err)
	}
	walkKey := "tucao." + events.Token(h.fake.ProductID()) + ".walk"
	before, err := h.cursors.Get(context.Background(), walkKey)
	if err != nil {
		t.Fatal(err)
	}

	close(gate.release)
	if err := <-done; !errors.Is(err, ingest.ErrStaleWalk) {
		t.Fatalf("the stale poller's poll: %v, want ErrStaleWalk", err)
	}
	after, err := h.cursors.Get(context.Background(), walkKey)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision() != before.Revision() || string(after.Value()) != string(before.Value()) {
		t.Fatalf("walk position moved from %s to %s by the stale poller", before.Value(), after.Value())
	}

	// The new holder goes on from its own position and finishes the walk.
	for i := 0; res.Behind; i++ {
		if i > 5 {
			t.Fatal("walk does not finish")
		}
		if res, err = fresh.PollOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for _, p := range h.fake.Posts() {
		want[p.ID] = true
	}
	h.publishedOnce(want)
}

// A stranger's flood of webhooks naming made-up posts costs at most 5
// re-reads a poll, and at most 64 wait: the budget stays the poller's.
func TestTucaoWebhookHintsAreBounded(t *testing.T) {
	h := newTucaoHarness(t)
	h.fake.Generate(5, 12)
	client, _ := tucao.New(h.fake.ClientConfig())
	reg := prometheus.NewRegistry()
	p, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "a", Interval: time.Hour}, client, h.bus, h.cursors, h.locks, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(p.WebhookHandler())
	defer hook.Close()
	for i := range 100 {
		body := `{"type":"reply.created","payload":{"post":{"id":"` + strconv.Itoa(100000+i) + `"}}}`
		resp, err := http.Post(hook.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook %d: %d", i, resp.StatusCode)
		}
	}
	if got := tucaoCounter(t, reg, "kefu_tucao_webhook_hints_total", "result", "dropped"); got != 36 {
		t.Errorf("%v hints dropped, want the 36 over 64", got)
	}
	for range 2 {
		before := h.fake.RequestCount()
		if _, err := p.PollOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := h.fake.RequestCount() - before; n != 1+5 {
			t.Errorf("a poll with hints waiting made %d requests, want 1 page and 5 re-reads", n)
		}
	}
}

// faultAfter makes the fake answer 429 to the request that follows the
// n-th post read, once.
type faultAfter struct {
	ingest.PostLister
	fake *tucaotest.Server
	n    int
}

func (f *faultAfter) Walk(ctx context.Context, opt tucao.ListOptions, maxPages int, fn func(tucao.Post) (bool, error)) (int, error) {
	return f.PostLister.Walk(ctx, opt, maxPages, func(p tucao.Post) (bool, error) {
		if f.n--; f.n == 0 {
			f.fake.FailNext(1, tucaotest.FaultRateLimited)
		}
		return fn(p)
	})
}

// A poll cut short by a rate limit keeps its position: the next one
// resumes at the stored max_id instead of walking from the top again.
func TestTucaoPollStoppedByARateLimitResumes(t *testing.T) {
	h := newTucaoHarness(t)
	h.fake.Generate(450, 13)
	cfg := h.fake.ClientConfig()
	cfg.MaxRetries = -1 // the 429 ends the poll
	client, _ := tucao.New(cfg)
	p, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "a", Interval: time.Hour},
		&faultAfter{PostLister: client, fake: h.fake, n: 300}, h.bus, h.cursors, h.locks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.PollOnce(context.Background())
	var apiErr *tucao.APIError
	if !errors.As(err, &apiErr) || !apiErr.RateLimited() || res.Created != 300 || !res.Behind {
		t.Fatalf("first poll %+v, %v; want 300 posts and a rate-limit error", res, err)
	}
	before := h.fake.RequestCount()
	res, err = p.PollOnce(context.Background())
	if err != nil || res.Created != 150 || res.Behind {
		t.Fatalf("second poll %+v, %v; want the other 150", res, err)
	}
	// The newest page, the two pages from the stored max_id, the rescan.
	if n := h.fake.RequestCount() - before; n > 4 {
		t.Errorf("the second poll made %d requests; it should resume, not walk from the top", n)
	}
	want := map[string]bool{}
	for _, post := range h.fake.Posts() {
		want[post.ID] = true
	}
	h.publishedOnce(want)
}

// A rescan window holding more posts than one poll reads is rescanned over
// several polls, each continuing where the last stopped: a reply on the
// window's oldest post is seen.
func TestTucaoRescanLargerThanAPollContinues(t *testing.T) {
	h := newTucaoHarness(t)
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	clock := tucao.NewFakeClock(now.Add(-6 * 24 * time.Hour))
	h.fake.SetClock(clock)
	oldest := h.fake.AddPost(tucaotest.PostInput{Content: "窗口里最早的反馈"})
	for range 2500 { // 26 pages within the window: more than a poll's 20
		clock.Advance(3 * time.Minute)
		h.fake.AddPost(tucaotest.PostInput{Content: "反馈"})
	}
	client, _ := tucao.New(h.fake.ClientConfig())
	p, _ := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "a", Interval: time.Hour}, client, h.bus, h.cursors, h.locks, nil, nil)
	p.SetClock(clock.Now)
	clock.SetAutoAdvance(true) // the limiter's waits move the fake's clock
	for i, res := 0, (ingest.PollResult{Behind: true}); res.Behind; i++ {
		if i == 5 {
			t.Fatal("still behind after 5 polls")
		}
		var err error
		if res, err = p.PollOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.fake.AddReply(oldest.ID, "您好"); err != nil {
		t.Fatal(err)
	}
	for poll := 1; ; poll++ {
		res, err := p.PollOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.Updated == 1 {
			t.Logf("the reply was seen at poll %d", poll)
			break
		}
		if poll == 4 {
			t.Fatal("the rescan pass never reached the window's oldest post")
		}
	}
}
