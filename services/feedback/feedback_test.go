package feedback_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
	"github.com/kefu-io/kefu/services/ingest"
)

// backends are the stores every pipeline test runs against; PostgreSQL
// skips unless KEFU_TEST_PG_DSN is set.
var backends = []struct {
	name    string
	backend storetest.Backend
}{
	{"sqlite", storetest.SQLite},
	{"postgres", storetest.Postgres},
}

func forEachBackend(t *testing.T, run func(t *testing.T, backend storetest.Backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			run(t, b.backend)
		})
	}
}

// shanghai is the zone Tucao writes its times in.
var shanghai = time.FixedZone("CST", 8*3600)

var t0 = time.Date(2025, 3, 3, 9, 0, 0, 0, shanghai)

// testConfig redelivers quickly so failure tests stay short.
func testConfig() feedback.Config {
	return feedback.Config{
		AckWait:      3 * time.Second,
		WriteTimeout: time.Second,
		Backoff:      []time.Duration{50 * time.Millisecond},
	}
}

type harness struct {
	t     *testing.T
	bus   *bus.Bus
	store store.Store
	reg   *prometheus.Registry
}

func newHarness(t *testing.T, s store.Store) *harness {
	t.Helper()
	srv := natstest.Run(t, nil)
	reg := prometheus.NewRegistry()
	b, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	// Publishers create their streams; the tests publish before the
	// service starts, as a role starting late would find them.
	if err := b.EnsureStreams(context.Background(), events.StreamTucao, events.StreamWeChat, events.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, bus: b, store: s, reg: reg}
}

// start builds and starts a service, stopped when the test ends.
func (h *harness) start(cfg feedback.Config, reg prometheus.Registerer) *feedback.Service {
	h.t.Helper()
	svc, err := feedback.New(cfg, feedback.Deps{Bus: h.bus, Store: h.store, Registerer: reg})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		if err := svc.Stop(context.Background()); err != nil {
			h.t.Errorf("stop: %v", err)
		}
	})
	return svc
}

func post(id int64, openid string, created time.Time, content string) events.FeedbackPost {
	return events.FeedbackPost{
		Meta:      events.Meta{ProductID: "1234", OccurredAt: created, ReceivedAt: created.Add(time.Second)},
		ID:        strconv.FormatInt(id, 10),
		OpenID:    openid,
		NickName:  "用户" + openid,
		Content:   content,
		CreatedAt: created,
		UpdatedAt: created,
		Replies:   json.RawMessage(`[{"id":"r1","content":"谢谢反馈"}]`),
	}
}

func (h *harness) publishPost(p events.FeedbackPost) {
	h.t.Helper()
	if err := h.sendPost(p); err != nil {
		h.t.Fatal(err)
	}
}

// sendPost publishes a post as the Tucao poller does; safe to call from
// any goroutine.
func (h *harness) sendPost(p events.FeedbackPost) error {
	_, err := h.bus.Publish(context.Background(), p, bus.Envelope{ID: events.TucaoPostID(p.ID, p.UpdatedAt), Source: "kefu/test"})
	return err
}

func (h *harness) publishSession(ev events.Event, openid string, at int64, name, kf string) {
	h.t.Helper()
	if err := h.sendSession(ev, openid, at, name, kf); err != nil {
		h.t.Fatal(err)
	}
}

// sendSession publishes a 多客服 event as ingest does.
func (h *harness) sendSession(ev events.Event, openid string, at int64, name, kf string) error {
	_, err := h.bus.Publish(context.Background(), ev, bus.Envelope{ID: events.WeChatEventID(openid, at, name, kf), Source: "kefu/test"})
	return err
}

func wechat(openid string, at time.Time) (events.Meta, events.WeChatSource) {
	return events.Meta{AppID: "wx1", OccurredAt: at, ReceivedAt: at},
		events.WeChatSource{OpenID: openid, ToUserName: "gh_1", CreateTime: at.Unix()}
}

func (h *harness) publishCreated(openid, kf string, at time.Time) {
	m, w := wechat(openid, at)
	h.publishSession(events.SessionCreated{Meta: m, WeChatSource: w, KfAccount: kf}, openid, at.Unix(), "kf_create_session", kf)
}

func (h *harness) publishClosed(openid, kf string, at time.Time) {
	m, w := wechat(openid, at)
	h.publishSession(events.SessionClosed{Meta: m, WeChatSource: w, KfAccount: kf}, openid, at.Unix(), "kf_close_session", kf)
}

// drained waits until the durable consumer has handled for good every
// message published so far.
func (h *harness) drained(stream, durable, filter string) {
	h.t.Helper()
	natstest.Eventually(h.t, 20*time.Second, func() bool {
		return isDrained(h.bus, stream, durable, filter)
	}, "%s", durable+" drained")
}

// isDrained reports whether the consumer has acknowledged the last message
// of its filter and has nothing pending. (NumPending alone can read 0 for
// a moment after a publish, before the consumer has counted it.)
func isDrained(b *bus.Bus, stream, durable, filter string) bool {
	ctx := context.Background()
	st, err := b.Stream(ctx, stream)
	if err != nil {
		return false
	}
	var last uint64
	switch m, err := st.GetLastMsgForSubject(ctx, filter); {
	case err == nil:
		last = m.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return false
	}
	info, err := b.ConsumerInfo(ctx, stream, durable)
	return err == nil && info.AckFloor.Stream >= last && info.NumPending == 0 && info.NumAckPending == 0
}

func (h *harness) drainedAll() {
	h.drained(events.StreamTucao, feedback.DurablePosts, feedback.FilterPosts)
	h.drained(events.StreamWeChat, feedback.DurableSessions, feedback.FilterSessions)
}

// get queries the service's HTTP API.
func get[T any](t *testing.T, svc *feedback.Service, path string, q url.Values) T {
	t.Helper()
	mux := http.NewServeMux()
	svc.Routes(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s?%s: %d %s", path, q.Encode(), rec.Code, rec.Body)
	}
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return v
}

// allPosts walks every page of the posts list.
func allPosts(t *testing.T, svc *feedback.Service) []store.Post {
	t.Helper()
	var out []store.Post
	q := url.Values{"limit": {"500"}}
	for {
		page := get[store.PostPage](t, svc, "/api/feedback/posts", q)
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		q.Set("cursor", page.NextCursor)
	}
}

// metric returns the value of a counter, or a histogram's sample count,
// with the given labels; 0 when absent.
func metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func TestPublishedPostsAreStoredAndServed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		h := newHarness(t, storetest.Open(t, backend))
		svc := h.start(testConfig(), h.reg)

		first := post(101, "o-a", t0, "登录页面白屏")
		h.publishPost(first)
		h.publishPost(post(102, "o-b", t0.Add(time.Minute), "希望支持夜间模式"))
		h.publishPost(post(103, "o-a", t0.Add(2*time.Minute), "客服回复很快"))
		h.drainedAll()

		got := allPosts(t, svc)
		if len(got) != 3 {
			t.Fatalf("listed %d posts, want 3", len(got))
		}
		if got[0].ID != "103" || got[2].ID != "101" || got[2].Content != first.Content ||
			got[2].NickName != first.NickName || string(got[2].Replies) != string(first.Replies) {
			t.Fatalf("posts not stored whole, newest first: %+v", got)
		}
		byOpenID := get[store.PostPage](t, svc, "/api/feedback/posts", url.Values{"openid": {"o-a"}})
		if len(byOpenID.Items) != 2 {
			t.Fatalf("openid filter: %d posts, want 2", len(byOpenID.Items))
		}

		// A newer version replaces the stored one.
		v2 := first
		v2.Content, v2.UpdatedAt, v2.ReplyCount, v2.Updated = "登录页面白屏（已修复）", t0.Add(2*time.Hour), 1, true
		h.publishPost(v2)
		h.drainedAll()
		stored := get[store.PostPage](t, svc, "/api/feedback/posts", url.Values{"q": {"登录"}})
		if len(stored.Items) != 1 || stored.Items[0].Content != v2.Content || stored.Items[0].ReplyCount != 1 {
			t.Fatalf("after an update: %+v, want version 2", stored.Items)
		}

		// An older version arriving late changes nothing.
		late := first
		late.Content, late.UpdatedAt, late.Updated = "登录页面白屏（处理中）", t0.Add(time.Hour), true
		h.publishPost(late)
		h.drainedAll()
		stored = get[store.PostPage](t, svc, "/api/feedback/posts", url.Values{"q": {"登录"}})
		if len(stored.Items) != 1 || stored.Items[0].Content != v2.Content {
			t.Fatalf("after a late older version: %+v, want version 2 kept", stored.Items)
		}
		if n := metric(t, h.reg, "kefu_feedback_items_total", map[string]string{"kind": "post"}); n != 5 {
			t.Errorf("kefu_feedback_items_total{kind=post} = %v, want 5 (each version written once)", n)
		}
	})
}

func TestPostAfterAClosedSessionIsLinked(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		h := newHarness(t, storetest.Open(t, backend))
		svc := h.start(testConfig(), h.reg)

		created, closed := t0, t0.Add(12*time.Minute)
		h.publishCreated("o-linked", "kf1@test", created)
		m, w := wechat("o-linked", t0.Add(5*time.Minute))
		h.publishSession(events.SessionSwitched{Meta: m, WeChatSource: w, FromKfAccount: "kf1@test", ToKfAccount: "kf2@test"},
			"o-linked", w.CreateTime, "kf_switch_session", "kf2@test")
		h.publishClosed("o-linked", "kf2@test", closed)
		h.publishPost(post(201, "o-linked", closed.Add(30*time.Minute), "客服解决了我的问题"))
		h.publishPost(post(202, "o-other", closed.Add(31*time.Minute), "别人的反馈"))
		h.drainedAll()

		sessions := get[store.SessionPage](t, svc, "/api/feedback/sessions", nil)
		if len(sessions.Items) != 1 {
			t.Fatalf("%d sessions, want the one closed session: %+v", len(sessions.Items), sessions.Items)
		}
		s := sessions.Items[0]
		if s.OpenID != "o-linked" || s.KfAccount != "kf2@test" || !s.StartedAt.Equal(created) || !s.ClosedAt.Equal(closed) ||
			s.DurationSeconds != 12*60 {
			t.Fatalf("session %+v", s)
		}
		if len(s.Posts) != 1 || s.Posts[0].ID != "201" {
			t.Fatalf("session posts %+v, want post 201 linked", s.Posts)
		}
		posts := get[store.PostPage](t, svc, "/api/feedback/posts", nil)
		for _, p := range posts.Items {
			linked := p.Session != nil && p.Session.KfAccount == "kf2@test" && p.Session.ClosedAt.Equal(closed)
			if linked != (p.ID == "201") {
				t.Errorf("post %s (openid %s) linked=%v: %+v", p.ID, p.OpenID, linked, p.Session)
			}
		}
		if n := metric(t, h.reg, "kefu_feedback_items_total", map[string]string{"kind": "session"}); n != 2 {
			t.Errorf("session facts stored = %v, want 2 (created and closed; switched is not stored)", n)
		}
	})
}

func TestPoisonMessagesAreDeadLetteredAndTheirBatchIsStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		h := newHarness(t, storetest.Open(t, backend))
		// A long linger and no idle flush, and everything published at
		// once: the poison shares its batches with valid posts.
		cfg := testConfig()
		cfg.Linger, cfg.Idle = 100*time.Millisecond, -1
		svc := h.start(cfg, h.reg)

		ctx := context.Background()
		badID := post(0, "o-p", t0, "id 不是数字")
		badID.ID = "not-a-number"
		m, w := wechat("", t0) // a close without an openid cannot be stored
		closed := events.SessionClosed{KfAccount: "kf1@test"}
		closed.Meta, closed.WeChatSource = wechat("o-p", t0.Add(-time.Hour))
		publish := []func() error{
			func() error {
				_, err := h.bus.PublishRaw(ctx, events.SubjectPostCreated, []byte(`{"id": "399", "content": `), bus.Envelope{Source: "kefu/test"})
				return err
			},
			func() error { return h.sendPost(badID) },
			func() error {
				return h.sendSession(events.SessionClosed{Meta: m, WeChatSource: w, KfAccount: "kf1@test"}, "", w.CreateTime, "kf_close_session", "kf1@test")
			},
			func() error {
				return h.sendSession(closed, "o-p", closed.CreateTime, "kf_close_session", "kf1@test")
			},
		}
		for i := range 10 {
			publish = append(publish, func() error {
				return h.sendPost(post(int64(300+i), "o-p", t0.Add(time.Duration(i)*time.Minute), "正常反馈"))
			})
		}
		var wg sync.WaitGroup
		for _, p := range publish {
			wg.Go(func() {
				if err := p(); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		h.drainedAll()

		if got := allPosts(t, svc); len(got) != 10 {
			t.Fatalf("stored %d posts, want the 10 valid ones", len(got))
		}
		if got := get[store.SessionPage](t, svc, "/api/feedback/sessions", nil); len(got.Items) != 1 {
			t.Fatalf("stored %d sessions, want the valid one", len(got.Items))
		}
		dlq := deadLetters(t, h.bus)
		if len(dlq) != 3 {
			t.Fatalf("%d dead letters, want 3: %v", len(dlq), dlq)
		}
		want := map[string]string{
			events.SubjectPostCreated + " 399":          "decode",
			events.SubjectPostCreated + " not-a-number": store.ErrInvalidPost.Error(),
			events.SubjectSessionClosed + " ":           store.ErrInvalidSessionFact.Error(),
		}
		for key, reason := range dlq {
			wantReason, ok := want[key]
			if !ok || !strings.Contains(reason, wantReason) {
				t.Errorf("dead letter %q: reason %q, want one about %q", key, reason, wantReason)
			}
		}
		// Valid messages were never retried: the poison was isolated,
		// not failed with its batch.
		for _, c := range []string{feedback.DurablePosts, feedback.DurableSessions} {
			if n := metric(t, h.reg, "kefu_consumer_messages_total", map[string]string{"consumer": c, "outcome": "retry"}); n != 0 {
				t.Errorf("%s: %v retries, want none", c, n)
			}
		}
		if n := metric(t, h.reg, "kefu_feedback_batches_total", map[string]string{"kind": "post", "outcome": "invalid"}); n < 1 {
			t.Errorf("no post batch was split to isolate the invalid post")
		}
	})
}

// deadLetters returns the messages of kefu.dlq.feedback, keyed by their
// original subject and post id (or openid), with their reason.
func deadLetters(t *testing.T, b *bus.Bus) map[string]string {
	t.Helper()
	ctx := context.Background()
	stream, err := b.Stream(ctx, events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != events.DLQSubject(feedback.Role) {
			t.Errorf("dead letter on %s, want %s", m.Subject, events.DLQSubject(feedback.Role))
		}
		var body struct {
			ID     string `json:"id"`
			OpenID string `json:"openid"`
		}
		if err := json.Unmarshal(m.Data, &body); err != nil {
			// Undecodable: the id is the first field of the test body.
			body.ID = "399"
		}
		subject := m.Header.Get(bus.HeaderDLQSubject)
		key := body.ID
		if strings.HasPrefix(subject, "kefu.wechat.") {
			key = body.OpenID
		}
		out[subject+" "+key] = m.Header.Get(bus.HeaderDLQReason)
	}
	return out
}

func TestRestartContinuesFromTheDurableConsumers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		h := newHarness(t, storetest.Open(t, backend))
		first := h.start(testConfig(), h.reg)
		for i := range 50 {
			h.publishPost(post(int64(1000+i), "o-r", t0.Add(time.Duration(i)*time.Minute), "重启前"))
		}
		h.drainedAll()
		if err := first.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}

		// Published while no service runs: 50 new posts and a newer
		// version of an old one.
		for i := range 50 {
			h.publishPost(post(int64(2000+i), "o-r", t0.Add(time.Duration(100+i)*time.Minute), "重启后"))
		}
		updated := post(1000, "o-r", t0, "重启后更新")
		updated.UpdatedAt, updated.Updated = t0.Add(time.Hour), true
		h.publishPost(updated)

		reg := prometheus.NewRegistry()
		second := h.start(testConfig(), reg)
		h.drainedAll()
		got := allPosts(t, second)
		ids := map[string]bool{}
		for _, p := range got {
			if ids[p.ID] {
				t.Errorf("post %s listed twice", p.ID)
			}
			ids[p.ID] = true
		}
		if len(ids) != 100 {
			t.Fatalf("%d distinct posts, want 100", len(ids))
		}
		if p := get[store.PostPage](t, second, "/api/feedback/posts", url.Values{"q": {"重启后更新"}}); len(p.Items) != 1 || p.Items[0].ID != "1000" {
			t.Fatalf("the update published during the restart: %+v", p.Items)
		}
		// The new service handled only what came after the first one
		// stopped; it did not replay the stream.
		if n := metric(t, reg, "kefu_feedback_items_total", map[string]string{"kind": "post"}); n != 51 {
			t.Fatalf("the restarted service stored %v items, want the 51 published after the stop", n)
		}
	})
}

func TestStopInTheMiddleLosesNothing(t *testing.T) {
	h := newHarness(t, storetest.Open(t, storetest.SQLite))
	const n = 400
	for i := range n {
		h.publishPost(post(int64(5000+i), "o-s", t0.Add(time.Duration(i)*time.Second), "中途停止"))
	}
	cfg := testConfig()
	cfg.BatchSize = 16 // many small batches, so the stop lands among them
	cfg.AckWait, cfg.WriteTimeout = time.Second, 400*time.Millisecond
	first := h.start(cfg, h.reg)
	natstest.Eventually(t, 20*time.Second, func() bool {
		return metric(t, h.reg, "kefu_feedback_items_total", map[string]string{"kind": "post"}) > 0
	}, "some posts stored")
	if err := first.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := h.start(cfg, h.reg)
	h.drainedAll()
	if got := allPosts(t, second); len(got) != n {
		t.Fatalf("%d posts stored, want all %d", len(got), n)
	}
}

// flakyStore fails its first writes as a database that is briefly down.
type flakyStore struct {
	store.Store
	mu                   sync.Mutex
	postFails, factFails int
}

var errUnavailable = errors.New("connection refused")

func (s *flakyStore) UpsertPosts(ctx context.Context, posts []events.FeedbackPost) error {
	s.mu.Lock()
	fail := s.postFails > 0
	s.postFails--
	s.mu.Unlock()
	if fail {
		return fmt.Errorf("upsert posts: %w", errUnavailable)
	}
	return s.Store.UpsertPosts(ctx, posts)
}

func (s *flakyStore) RecordSessions(ctx context.Context, facts []store.SessionFact) error {
	s.mu.Lock()
	fail := s.factFails > 0
	s.factFails--
	s.mu.Unlock()
	if fail {
		return fmt.Errorf("record sessions: %w", errUnavailable)
	}
	return s.Store.RecordSessions(ctx, facts)
}

func TestStoreFailuresAreRedeliveredUntilStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		flaky := &flakyStore{Store: storetest.Open(t, backend), postFails: 3, factFails: 2}
		h := newHarness(t, flaky)
		svc := h.start(testConfig(), h.reg)
		for i := range 20 {
			h.publishPost(post(int64(400+i), "o-f", t0.Add(time.Duration(i)*time.Minute), "数据库故障期间"))
		}
		h.publishCreated("o-f", "kf1@test", t0.Add(-time.Hour))
		h.publishClosed("o-f", "kf1@test", t0.Add(-30*time.Minute))

		natstest.Eventually(t, 20*time.Second, func() bool {
			return metric(t, h.reg, "kefu_feedback_items_total", map[string]string{"kind": "post"}) == 20 &&
				metric(t, h.reg, "kefu_feedback_items_total", map[string]string{"kind": "session"}) == 2
		}, "every post stored")
		if got := allPosts(t, svc); len(got) != 20 {
			t.Fatalf("%d posts stored, want 20", len(got))
		}
		sessions := get[store.SessionPage](t, svc, "/api/feedback/sessions", nil)
		if len(sessions.Items) != 1 || len(sessions.Items[0].Posts) != 20 {
			t.Fatalf("sessions %+v, want one with the 20 posts linked", sessions.Items)
		}
		if n := metric(t, h.reg, "kefu_feedback_batches_total", map[string]string{"kind": "post", "outcome": "failed"}); n != 3 {
			t.Errorf("%v failed post batches, want 3", n)
		}
		if n := metric(t, h.reg, "kefu_feedback_batches_total", map[string]string{"kind": "session", "outcome": "failed"}); n != 2 {
			t.Errorf("%v failed session batches, want 2", n)
		}
		if n := metric(t, h.reg, "kefu_consumer_messages_total", map[string]string{"consumer": feedback.DurablePosts, "outcome": "retry"}); n == 0 {
			t.Error("no post message was redelivered")
		}
		if dlq := deadLetters(t, h.bus); len(dlq) != 0 {
			t.Errorf("dead letters %v, want none: a store failure is not the message's fault", dlq)
		}
	})
}

func TestReadyPingsTheStore(t *testing.T) {
	s := storetest.Open(t, storetest.SQLite)
	h := newHarness(t, s)
	svc, err := feedback.New(feedback.Config{}, feedback.Deps{Bus: h.bus, Store: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Ready(context.Background()); err != nil {
		t.Fatalf("ready with an open store: %v", err)
	}
	closed, err := storetest.SQLite(t)()
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	svc, _ = feedback.New(feedback.Config{}, feedback.Deps{Bus: h.bus, Store: closed})
	if err := svc.Ready(context.Background()); err == nil {
		t.Fatal("ready with a closed store, want an error")
	}
}

func TestNewRejectsWhatCannotWork(t *testing.T) {
	s := storetest.Open(t, storetest.SQLite)
	h := newHarness(t, s)
	cases := []struct {
		name string
		cfg  feedback.Config
		deps feedback.Deps
	}{
		{"a bus is required", feedback.Config{}, feedback.Deps{Store: s}},
		{"a store is required", feedback.Config{}, feedback.Deps{Bus: h.bus}},
		{"AckWait must outlast a batch's linger and write", feedback.Config{AckWait: time.Second, WriteTimeout: time.Second}, feedback.Deps{Bus: h.bus, Store: s}},
		{"MaxAckPending below Concurrency would idle handlers", feedback.Config{Concurrency: 10, MaxAckPending: 5}, feedback.Deps{Bus: h.bus, Store: s}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := feedback.New(c.cfg, c.deps); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestStartTwiceIsRefusedAndStartAfterStopResumes(t *testing.T) {
	h := newHarness(t, storetest.Open(t, storetest.SQLite))
	svc := h.start(testConfig(), h.reg)
	if err := svc.Start(context.Background()); !errors.Is(err, feedback.ErrStarted) {
		t.Fatalf("second Start: %v, want ErrStarted", err)
	}
	if err := svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.publishPost(post(700, "o-s", t0, "停了又开"))
	if err := svc.Start(context.Background()); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	h.drainedAll()
	if got := allPosts(t, svc); len(got) != 1 {
		t.Fatalf("%d posts, want 1", len(got))
	}
}

// TestTucaoPollerToFeedbackAPI runs the whole path: the fake Tucao server,
// the ingest poller publishing to JetStream, this service storing, the API.
func TestTucaoPollerToFeedbackAPI(t *testing.T) {
	h := newHarness(t, storetest.Open(t, storetest.SQLite))
	svc := h.start(testConfig(), h.reg)
	ctx := context.Background()

	fake := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(fake.Close)
	fake.Generate(150, 7)
	client, err := tucao.New(fake.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	cursors, err := h.bus.KeyValue(ctx, bus.BucketCursors)
	if err != nil {
		t.Fatal(err)
	}
	locks, err := h.bus.KeyValue(ctx, bus.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	poller, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: fake.ProductID(), Holder: "test", Interval: time.Hour},
		client, h.bus, cursors, locks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := poller.PollOnce(ctx); err != nil || res.Created != 150 {
		t.Fatalf("poll: %+v, %v", res, err)
	}
	h.drainedAll()

	got := allPosts(t, svc)
	if len(got) != 150 {
		t.Fatalf("the API lists %d posts, want the 150 on Tucao", len(got))
	}
	stored := map[string]store.Post{}
	for _, p := range got {
		stored[p.ID] = p
	}
	for _, src := range fake.Posts() {
		p, ok := stored[src.ID]
		if !ok {
			t.Fatalf("Tucao post %s is not stored", src.ID)
		}
		if p.Content != src.Content || p.OpenID != src.OpenID || p.ProductID != fake.ProductID() {
			t.Fatalf("post %s stored as %+v, Tucao has %+v", src.ID, p.FeedbackPost, src)
		}
	}
}

// BenchmarkFeedbackPipeline measures posts per second from JetStream into
// SQLite: b.N posts are published first, then the service consumes them
// all; the figure is end to end (delivery, decode, batched commit, ack).
func BenchmarkFeedbackPipeline(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  feedback.Config
	}{
		{"batch=1", feedback.Config{BatchSize: 1}},
		{"batch=default", feedback.Config{}},
		{"batch=default,idle=off", feedback.Config{Idle: -1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := natstest.Run(b, nil)
			bb, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(bb.Close)
			ctx := context.Background()
			if err := bb.EnsureStreams(ctx, events.StreamTucao, events.StreamWeChat, events.StreamDLQ); err != nil {
				b.Fatal(err)
			}
			_, js := natstest.Connect(b, srv)
			publishAsync(b, js, b.N)
			s := storetest.Open(b, storetest.SQLite)
			reg := prometheus.NewRegistry()
			svc, err := feedback.New(bc.cfg, feedback.Deps{Bus: bb, Store: s, Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}

			b.ResetTimer()
			start := time.Now()
			if err := svc.Start(ctx); err != nil {
				b.Fatal(err)
			}
			for !isDrained(bb, events.StreamTucao, feedback.DurablePosts, feedback.FilterPosts) {
				time.Sleep(2 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if err := svc.Stop(ctx); err != nil {
				b.Fatal(err)
			}
			page, err := s.ListPosts(ctx, store.PostQuery{Limit: 1})
			if err != nil || len(page.Items) != 1 {
				b.Fatalf("nothing stored: %v", err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "posts/s")
			if batches := metric(b, reg, "kefu_feedback_batch_size", map[string]string{"kind": feedback.KindPost}); batches > 0 {
				b.ReportMetric(metric(b, reg, "kefu_feedback_items_total", map[string]string{"kind": feedback.KindPost})/batches, "posts/batch")
			}
		})
	}
}

// publishAsync fills KEFU_TUCAO with n posts as fast as JetStream takes them.
func publishAsync(b *testing.B, js jetstream.JetStream, n int) {
	b.Helper()
	for i := range n {
		p := post(int64(i+1), "o-"+strconv.Itoa(i%500), t0.Add(time.Duration(i)*time.Second), "性能测试的反馈内容，长度和真实反馈差不多。")
		data, err := events.Encode(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishAsync(events.SubjectPostCreated, data, jetstream.WithMsgID(events.TucaoPostID(p.ID, p.UpdatedAt))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishing did not complete")
	}
}
