package faulttest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

// flow is the traffic of the outage scenarios: session callbacks from a
// generator to ingest and, with a Tucao fake, posts for ingest's poller.
type flow struct {
	gen    *generator
	tucao  *tucaotest.Server
	marker string
	posts  map[string]bool
	mu     sync.Mutex
}

// run sends callbacks at rate, and a post every postEvery, until ctx ends.
func (f *flow) run(ctx context.Context, rate float64, postEvery time.Duration) {
	var wg sync.WaitGroup
	wg.Go(func() { f.gen.run(ctx, rate) })
	if f.tucao != nil {
		wg.Go(func() {
			for i := 0; ; i++ {
				p := f.tucao.AddPost(tucaotest.PostInput{Content: fmt.Sprintf("%s 反馈 %d", f.marker, i)})
				f.mu.Lock()
				f.posts[p.ID] = true
				f.mu.Unlock()
				if sleep(ctx, postEvery) != nil {
					return
				}
			}
		})
	}
	wg.Wait()
}

// watchRun starts a run's observer (of the streams at natsURLs and the
// feedback role at fbAddr) and its callback generator (to the ingest role
// at ingAddr), both on the openids of runPrefix(tag). The caller closes
// the observer.
func watchRun(natsURLs, fbAddr, ingAddr string, wx *wechattest.Server, tag string, since time.Time) (*observer, *generator, error) {
	prefix := runPrefix(tag)
	obs, err := newObserver(natsURLs, "http://"+fbAddr, wx, prefix, since)
	if err != nil {
		return nil, nil, err
	}
	gen, err := newGenerator(ingAddr, wx, prefix)
	if err != nil {
		obs.close()
		return nil, nil, err
	}
	return obs, gen, nil
}

// loadAround runs the flow (see run) for an outage of d with lead on
// either side, and returns once the first lead has passed. done closes
// when the load ends; stop ends it sooner and is to be called whatever
// the error.
func (f *flow) loadAround(ctx context.Context, rate float64, postEvery, lead, d time.Duration) (done <-chan struct{}, stop context.CancelFunc, err error) {
	loadCtx, stop := context.WithTimeout(ctx, lead+d+lead)
	ended := make(chan struct{})
	go func() { f.run(loadCtx, rate, postEvery); close(ended) }()
	return ended, stop, sleep(ctx, lead)
}

// verifySessions waits until every callback answered success is in the
// stream and in the store (or nothing changes for CatchUp) and the
// feedback consumer is idle, then counts, per callback answered success,
// whether what it must become arrived: its event in the stream once, and
// for a close its closed session in the store once, for a create that
// session's start.
func (sc *scenario) verifySessions(ctx context.Context, obs *observer, gen *generator) (Row, CallbackCounts, error) {
	_, cbs := gen.results()
	var row Row
	var err error
	last := ""
	_, werr := waitUntil(ctx, sc.cfg.CatchUp, time.Second, func() (bool, string) {
		ok, why := obs.idle(ctx, []consumerRef{{events.StreamWeChat, feedback.DurableSessions}})
		if why != last {
			sc.logf("catching up: %s", why)
			last = why
		}
		if !ok {
			return false, why
		}
		var stream map[string]*streamEvent
		var stored map[string][]storedSession
		if stream, err = obs.sessionEvents(ctx); err != nil {
			return false, err.Error()
		}
		if stored, err = obs.storedSessions(ctx); err != nil {
			return false, err.Error()
		}
		row = sessionRow(cbs, stream, stored)
		return row.Lost == 0, fmt.Sprintf("%d of %d session facts not stored yet", row.Lost, row.Sent)
	})
	if werr != nil && ctx.Err() != nil {
		return row, CallbackCounts{}, werr
	}
	if err != nil {
		return row, CallbackCounts{}, err
	}
	return row, countCallbacks(cbs), nil
}

// sessionRow counts each callback answered success once: stored when its
// event is in the stream and, for a close, its closed session is in the
// store (for a create, with its start); doubled when the event or the
// session is there twice.
func sessionRow(cbs []callback, stream map[string]*streamEvent, stored map[string][]storedSession) Row {
	createOK := map[string]bool{}
	for _, cb := range cbs {
		if cb.event == eventCreate && cb.success {
			createOK[cb.openid] = true
		}
	}
	var row Row
	for _, cb := range cbs {
		if !cb.success {
			continue
		}
		row.Sent++
		e := stream[cb.id]
		sessions := stored[cb.openid]
		arrived := e != nil && len(sessions) > 0
		if arrived && cb.event == eventCreate {
			arrived = !sessions[0].StartedAt.IsZero()
		}
		if arrived {
			row.Stored++
		} else {
			row.Lost++
		}
		if (e != nil && e.count > 1) || len(sessions) > 1 {
			row.Doubled++
		}
	}
	return row
}

// storeOutage: posts (through ingest's Tucao poller) and session callbacks
// flow while the TCP proxy between feedback and PostgreSQL is cut for
// StoreCut; after it is restored every post and session fact is stored
// and nothing went to the dead-letter stream.
func (sc *scenario) storeOutage(ctx context.Context) Row {
	if sc.cfg.PostgresDSN == "" {
		return Row{Skipped: "no PostgreSQL DSN (KEFU_TEST_PG_DSN)"}
	}
	u, err := url.Parse(sc.cfg.PostgresDSN)
	if err != nil || u.Host == "" {
		return Row{Err: fmt.Errorf("the PostgreSQL DSN must be a postgres:// URL with a host to put a proxy in front of")}
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	proxy, err := storetest.StartProxy(target)
	if err != nil {
		return Row{Err: err}
	}
	defer proxy.Close()
	u.Host = proxy.Addr()

	wx, api, err := fakeWeChat()
	if err != nil {
		return Row{Err: err}
	}
	defer wx.Close()
	defer api.Close()
	tc, marker := tucaoFake()
	defer tc.Close()

	since := time.Now()
	fbEnv := map[string]string{"KEFU_FEEDBACK_DSN": u.String()}
	if sc.cfg.StoreCut < time.Minute {
		// A short cut still outlasts many times the retry budget that
		// used to end in the dead-letter stream (5 deliveries).
		fbEnv["KEFU_RETRY_MAX_BACKOFF"] = "1s"
	}
	fb, err := sc.startRole(ctx, roleOpts{name: "feedback", role: "feedback", env: fbEnv})
	if err != nil {
		return Row{Err: err}
	}
	ing, err := sc.startRole(ctx, roleOpts{name: "ingest", role: "ingest", env: tucaoEnv(tc, 2*time.Second)})
	if err != nil {
		return Row{Err: err}
	}
	obs, gen, err := watchRun(sc.cluster.URLs(), fb.addr, ing.addr, wx, "SO", since)
	if err != nil {
		return Row{Err: err}
	}
	defer obs.close()
	f := &flow{gen: gen, tucao: tc, marker: marker, posts: map[string]bool{}}

	lead := max(3*time.Second, sc.cfg.StoreCut/10)
	done, stop, err := f.loadAround(ctx, sc.cfg.Rate, time.Second/2, lead, sc.cfg.StoreCut)
	defer stop()
	if err != nil {
		return Row{Err: err}
	}
	sc.logf("cutting the proxy to PostgreSQL for %s", sc.cfg.StoreCut)
	proxy.Cut()
	cutAt := time.Now()
	// The role says it cannot store: its readiness fails.
	notReady := false
	waitUntil(ctx, min(sc.cfg.StoreCut, 30*time.Second), 200*time.Millisecond, func() (bool, string) {
		notReady = !ready(fb.addr)
		return notReady, "feedback still ready"
	})
	if err := sleep(ctx, time.Until(cutAt.Add(sc.cfg.StoreCut))); err != nil {
		return Row{Err: err}
	}
	proxy.Restore()
	restored := time.Now()
	sc.logf("proxy restored")
	<-done

	row, calls, err := sc.verifySessions(ctx, obs, f.gen)
	if err != nil {
		return Row{Err: err}
	}
	stored, lost, doubled, err := sc.postCheck(ctx, obs, "http://"+fb.addr, marker, f.posts)
	if err != nil {
		row.Err = err
		return row
	}
	caughtUp := time.Since(restored)
	row.Sent += len(f.posts)
	row.Stored += stored
	row.Lost += lost
	row.Doubled += doubled
	dlq, err := obs.deadLetters(ctx, since)
	if err != nil {
		row.Err = err
		return row
	}
	row.Detail = fmt.Sprintf("store cut %s; %d posts + %d session facts, all stored %s after the restore; DLQ %d; feedback not ready during the cut: %v",
		sc.cfg.StoreCut, len(f.posts), calls.Success, caughtUp.Round(time.Second), dlq, notReady)
	if dlq > 0 {
		row.Err = fmt.Errorf("%d messages dead-lettered during the outage", dlq)
	}
	return row
}

// ready reports whether GET /readyz answers 200.
func ready(addr string) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// natsStopped: a NATS server of its own with a leaf node port at 7422
// (where ingest's store and forward dials), ingest with
// KEFU_INGEST_STORE_FORWARD and feedback; under steady callbacks the
// server is shut down for NATSStopped and started again on its store.
// Every callback answered success must be in the stream and the store
// exactly once.
func (sc *scenario) natsStopped(ctx context.Context) Row {
	if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(bus.DefaultLeafPort))); err != nil {
		return Row{Skipped: fmt.Sprintf("leaf node port %d busy, where store and forward dials: %v", bus.DefaultLeafPort, err)}
	} else {
		l.Close()
	}
	ports, err := freePorts(1)
	if err != nil {
		return Row{Err: err}
	}
	opts := &server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: ports[0],
		JetStream: true, StoreDir: filepath.Join(sc.dir, "nats"),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: bus.DefaultLeafPort},
		NoLog:    true, NoSigs: true,
	}
	hub := &standalone{opts: opts}
	if err := hub.start(); err != nil {
		return Row{Err: err}
	}
	defer hub.stop()
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", ports[0])

	wx, api, err := fakeWeChat()
	if err != nil {
		return Row{Err: err}
	}
	defer wx.Close()
	defer api.Close()
	since := time.Now()
	fb, err := sc.startRole(ctx, roleOpts{name: "feedback", role: "feedback", natsURL: natsURL, replicas: "1"})
	if err != nil {
		return Row{Err: err}
	}
	ing, err := sc.startRole(ctx, roleOpts{name: "ingest", role: "ingest", natsURL: natsURL, replicas: "1",
		env: map[string]string{"KEFU_INGEST_STORE_FORWARD": "true"}})
	if err != nil {
		return Row{Err: err}
	}
	obs, gen, err := watchRun(natsURL, fb.addr, ing.addr, wx, "NS", since)
	if err != nil {
		return Row{Err: err}
	}
	defer obs.close()
	f := &flow{gen: gen}

	lead := max(3*time.Second, sc.cfg.NATSStopped/6)
	done, stop, err := f.loadAround(ctx, sc.cfg.Rate, 0, lead, sc.cfg.NATSStopped)
	defer stop()
	if err != nil {
		return Row{Err: err}
	}
	_, before := f.gen.results()
	sc.logf("stopping NATS for %s", sc.cfg.NATSStopped)
	hub.stop()
	if err := sleep(ctx, sc.cfg.NATSStopped); err != nil {
		return Row{Err: err}
	}
	_, during := f.gen.results()
	successDuring := countCallbacks(during).Success - countCallbacks(before).Success
	if err := hub.start(); err != nil {
		return Row{Err: err}
	}
	restarted := time.Now()
	sc.logf("NATS started again")
	<-done

	row, calls, err := sc.verifySessions(ctx, obs, f.gen)
	if err != nil {
		return Row{Err: err}
	}
	row.Detail = fmt.Sprintf("NATS stopped %s; %d callbacks answered success while it was down; all stored %s after it was back; %d answers 503, %d connection errors",
		sc.cfg.NATSStopped, successDuring, time.Since(restarted).Round(time.Second), calls.Status503, calls.Transport)
	return row
}

// standalone is a single NATS server that keeps its ports and store across
// a restart.
type standalone struct {
	opts *server.Options
	mu   sync.Mutex
	srv  *server.Server
}

func (s *standalone) start() error {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("start nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("start nats: not ready for connections in 15s")
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

func (s *standalone) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}
