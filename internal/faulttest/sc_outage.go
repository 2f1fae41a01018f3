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
	"github.com/kefu-io/kefu/internal/wechat"
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

// verifySessions waits until the session consumers are idle, then tallies
// the callbacks against the stream and the store.
func (sc *scenario) verifySessions(ctx context.Context, obs *observer, gen *generator) (Report, error) {
	if _, err := waitUntil(ctx, sc.cfg.CatchUp, time.Second, func() (bool, string) {
		return obs.idle(ctx, []consumerRef{{events.StreamWeChat, feedback.DurableSessions}})
	}); err != nil {
		return Report{}, err
	}
	_, cbs := gen.results()
	stream, err := obs.sessionEvents(ctx)
	if err != nil {
		return Report{}, err
	}
	stored, err := obs.storedSessions(ctx)
	if err != nil {
		return Report{}, err
	}
	rep := tally(cbs, stream, stored, nil, nil, false)
	rep.Callbacks = countCallbacks(cbs)
	return rep, nil
}

// sessionRow turns a tally into a row: every callback answered success is
// a session fact sent; it is lost when it is not in the stream, or when
// its closed session (a close) or that session's start (a create) is not
// in the store.
func sessionRow(rep Report) Row {
	row := Row{Sent: rep.Callbacks.Success}
	row.Lost = rep.Stream.MissingSuccess + rep.StoredSessions.Missing + rep.StartUnknown
	row.Doubled = rep.Stream.DuplicatedIDs + rep.StoredSessions.Duplicated
	row.Stored = row.Sent - row.Lost
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
	fb, err := sc.startRole(ctx, roleOpts{name: "feedback", role: "feedback", env: map[string]string{"KEFU_FEEDBACK_DSN": u.String()}})
	if err != nil {
		return Row{Err: err}
	}
	ing, err := sc.startRole(ctx, roleOpts{name: "ingest", role: "ingest", env: tucaoEnv(tc, 2*time.Second)})
	if err != nil {
		return Row{Err: err}
	}
	prefix := runPrefix("SO")
	obs, err := newObserver(sc.cluster.URLs(), "http://"+fb.addr, wx, prefix, since)
	if err != nil {
		return Row{Err: err}
	}
	defer obs.close()
	codec, err := wechat.NewCodec(token, appID, aesKey)
	if err != nil {
		return Row{Err: err}
	}
	f := &flow{gen: newGenerator("http://"+ing.addr+"/wechat/callback", codec, wx, appID, prefix, agents),
		tucao: tc, marker: marker, posts: map[string]bool{}}

	lead := max(3*time.Second, sc.cfg.StoreCut/10)
	loadCtx, stop := context.WithTimeout(ctx, lead+sc.cfg.StoreCut+lead)
	defer stop()
	done := make(chan struct{})
	go func() { f.run(loadCtx, sc.cfg.Rate, time.Second/2); close(done) }()
	if err := sleep(ctx, lead); err != nil {
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
	sc.logf("proxy restored")
	<-done

	rep, err := sc.verifySessions(ctx, obs, f.gen)
	if err != nil {
		return Row{Err: err}
	}
	row := sessionRow(rep)
	stored, lost, doubled, err := sc.postCheck(ctx, obs, "http://"+fb.addr, marker, f.posts)
	if err != nil {
		row.Err = err
		return row
	}
	row.Sent += len(f.posts)
	row.Stored += stored
	row.Lost += lost
	row.Doubled += doubled
	dlq, err := obs.deadLetters(ctx, since)
	if err != nil {
		row.Err = err
		return row
	}
	row.Detail = fmt.Sprintf("store cut %s; %d posts + %d session facts; DLQ %d; feedback not ready during the cut: %v",
		sc.cfg.StoreCut, len(f.posts), rep.Callbacks.Success, dlq, notReady)
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
	prefix := runPrefix("NS")
	obs, err := newObserver(natsURL, "http://"+fb.addr, wx, prefix, since)
	if err != nil {
		return Row{Err: err}
	}
	defer obs.close()
	codec, err := wechat.NewCodec(token, appID, aesKey)
	if err != nil {
		return Row{Err: err}
	}
	f := &flow{gen: newGenerator("http://"+ing.addr+"/wechat/callback", codec, wx, appID, prefix, agents)}

	lead := max(3*time.Second, sc.cfg.NATSStopped/6)
	loadCtx, stop := context.WithTimeout(ctx, lead+sc.cfg.NATSStopped+lead)
	defer stop()
	done := make(chan struct{})
	go func() { f.run(loadCtx, sc.cfg.Rate, 0); close(done) }()
	if err := sleep(ctx, lead); err != nil {
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
	sc.logf("NATS started again")
	<-done

	rep, err := sc.verifySessions(ctx, obs, f.gen)
	if err != nil {
		return Row{Err: err}
	}
	row := sessionRow(rep)
	row.Detail = fmt.Sprintf("NATS stopped %s; %d callbacks answered success while it was down; %d answers 503, %d connection errors",
		sc.cfg.NATSStopped, successDuring, rep.Callbacks.Status503, rep.Callbacks.Transport)
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
