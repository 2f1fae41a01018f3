package faulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

// Credentials of the fake official account; the roles get the same.
const (
	appID     = "wxfa17fa17fa17fa17"
	appSecret = "faulttest-secret-0123456789abcdef"
	token     = "faulttesttoken"
	aesKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// Agents who take the sessions, round robin.
var agents = []string{"alice@kefufaults", "bob@kefufaults", "carol@kefufaults"}

// FaultKind is what goes wrong.
type FaultKind int

// Faults.
const (
	// KillNATSNode shuts a NATS node down (Fault.Node), waits
	// Config.NATSDown and starts it again on its store; back when the
	// cluster is healthy.
	KillNATSNode FaultKind = iota
	// KillFeedback kills the feedback process (SIGKILL) and restarts it.
	KillFeedback
	// KillNotifier kills the notifier process (SIGKILL) and restarts it.
	KillNotifier
	// RestartIngest stops ingest with SIGTERM and starts it again;
	// callbacks meanwhile find no listener and are retried.
	RestartIngest
)

// Fault is one fault of the scenario.
type Fault struct {
	Kind FaultKind
	// At is when it begins, as a fraction of the load's duration; a fault
	// never begins before the previous one is over.
	At float64
	// Node is the NATS node KillNATSNode shuts down: n1, n2 or n3, or
	// LeaderNode for the one leading KEFU_WECHAT at that moment, the
	// hardest case for ingest (default LeaderNode).
	Node string
}

// LeaderNode makes KillNATSNode pick the KEFU_WECHAT stream leader.
const LeaderNode = "leader"

func (f Fault) node() string {
	if f.Node == "" {
		return LeaderNode
	}
	return f.Node
}

// Describe names the fault for the report.
func (f Fault) Describe() string {
	switch f.Kind {
	case KillNATSNode:
		return "NATS node shut down, restarted"
	case KillFeedback:
		return "kill -9 feedback, restart"
	case KillNotifier:
		return "kill -9 notifier, restart"
	case RestartIngest:
		return "SIGTERM ingest, restart"
	}
	return fmt.Sprintf("fault %d", int(f.Kind))
}

// DefaultFaults is the soak's sequence, spread over the load.
func DefaultFaults() []Fault {
	return []Fault{
		{Kind: KillNATSNode, At: 0.1, Node: LeaderNode},
		{Kind: KillFeedback, At: 0.3},
		{Kind: KillNotifier, At: 0.5},
		{Kind: RestartIngest, At: 0.7},
	}
}

// Config of a run.
type Config struct {
	// Duration of the load (default 60s).
	Duration time.Duration
	// Rate is callbacks per second, two per session (default 150).
	Rate float64
	// Faults in order (default DefaultFaults).
	Faults []Fault
	// NATSDown is how long the NATS node stays down (default 5s).
	NATSDown time.Duration
	// CatchUpTimeout bounds the wait for the consumers after the load
	// without progress (default 3m: the notifier's AckWait is 60 s, and a
	// message a killed process held comes back only after it); the whole
	// wait is at most five times this.
	CatchUpTimeout time.Duration
	// FeedbackDSN is KEFU_FEEDBACK_DSN for the feedback role: "" stores in
	// SQLite in its data directory.
	FeedbackDSN string
	// Dir holds the binary, the NATS stores, the roles' data and logs.
	// Required; the caller removes it.
	Dir string
	// Binary is a built kefu; "" builds cmd/kefu into Dir.
	Binary string
	// Log receives progress lines (nil: discarded).
	Log io.Writer

	// cluster is RunSuite's, which Run uses instead of starting its own.
	cluster *cluster
}

func (c *Config) setDefaults() {
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 150
	}
	if c.Faults == nil {
		c.Faults = DefaultFaults()
	}
	if c.NATSDown <= 0 {
		c.NATSDown = 5 * time.Second
	}
	if c.CatchUpTimeout <= 0 {
		c.CatchUpTimeout = 3 * time.Minute
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// run is the state of one run.
type run struct {
	cfg     Config
	start   time.Time // of the load
	cluster *cluster
	procs   map[string]*process
	roles   []string
	obs     *observer
	logMu   sync.Mutex
}

func (r *run) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	at := "setup"
	if !r.start.IsZero() {
		at = fmt.Sprintf("t+%5.1fs", time.Since(r.start).Seconds())
	}
	fmt.Fprintf(r.cfg.Log, "%s  %s\n", at, fmt.Sprintf(format, args...))
}

// Run sets everything up, runs the load with the faults, waits for the
// consumers and verifies. The error is for a run that could not be set
// up or driven; losses and duplicates are in the Report (Report.OK).
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.setDefaults()
	if cfg.Dir == "" {
		return Report{}, errors.New("faulttest: Config.Dir is required")
	}
	r := &run{cfg: cfg, procs: map[string]*process{}}
	rep := Report{Rate: cfg.Rate, Duration: cfg.Duration, Store: "sqlite"}
	if cfg.FeedbackDSN != "" {
		rep.Store = "postgres"
	}

	bin := cfg.Binary
	if bin == "" {
		r.logf("building kefu")
		var err error
		if bin, err = BuildKefu(ctx, cfg.Dir); err != nil {
			return rep, err
		}
	}
	hasNotifier, err := HasRole(ctx, bin, "notifier")
	if err != nil {
		return rep, err
	}
	rep.Notifier = hasNotifier
	r.roles = []string{"ingest", "feedback"}
	if hasNotifier {
		r.roles = append(r.roles, "notifier")
	} else {
		r.logf("this kefu has no notifier role: checking the stream instead of notifications")
	}

	// The fake WeChat: the roles' API base. It has no callback URL: the
	// generator posts the callbacks itself, to count every attempt.
	fake, err := wechattest.New(wechattest.Config{
		AppID: appID, AppSecret: appSecret, Token: token, EncodingAESKey: aesKey,
		Mode: wechat.ModeSafe, HistoryLimit: 1 << 22,
	})
	if err != nil {
		return rep, err
	}
	defer fake.Close()
	for i, a := range agents {
		if err := fake.AddAgent(a, []string{"小李", "小王", "小张"}[i%3]); err != nil {
			return rep, fmt.Errorf("add agent %s: %w", a, err)
		}
	}
	api := httptest.NewServer(fake)
	defer api.Close()

	if cfg.cluster != nil {
		r.cluster = cfg.cluster
	} else {
		r.logf("starting a 3-node NATS cluster")
		if r.cluster, err = startCluster(filepath.Join(cfg.Dir, "nats"), 3); err != nil {
			return rep, err
		}
		defer r.cluster.shutdown()
	}

	ports, err := freePorts(len(r.roles))
	if err != nil {
		return rep, err
	}
	for i, role := range r.roles {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		env := map[string]string{
			"KEFU_NATS_URL":        r.cluster.URLs(),
			"KEFU_NATS_REPLICAS":   "3",
			"KEFU_HTTP_ADDR":       addr,
			"KEFU_DATA_DIR":        filepath.Join(cfg.Dir, role),
			"KEFU_LOG_LEVEL":       "warn",
			"KEFU_WECHAT_APPID":    appID,
			"KEFU_WECHAT_SECRET":   appSecret,
			"KEFU_WECHAT_TOKEN":    token,
			"KEFU_WECHAT_AES_KEY":  aesKey,
			"KEFU_WECHAT_API_BASE": api.URL,
			"KEFU_WECHAT_TRANSFER": "false",
			// The store is read back through /api/, which answers only
			// to a token.
			"KEFU_API_TOKEN": apiToken,
			// The generator stands for all of WeChat's callback
			// addresses at once: one client, at the load's full rate.
			"KEFU_PUBLIC_RATE_LIMIT": "0",
		}
		switch role {
		case "feedback":
			if cfg.FeedbackDSN != "" {
				env["KEFU_FEEDBACK_DSN"] = cfg.FeedbackDSN
			}
		case "notifier":
			// The generator's rate, not the account's budget, is what
			// is under test. (The role's shared WeChat client keeps a
			// limit of its own, 50 calls/s.)
			env["KEFU_NOTIFY_RATE_LIMIT"] = "off"
		}
		if err := os.MkdirAll(env["KEFU_DATA_DIR"], 0o750); err != nil {
			return rep, err
		}
		r.procs[role] = &process{role: role, bin: bin, env: roleEnv(env), addr: addr,
			logPath: filepath.Join(cfg.Dir, role+".log")}
	}
	defer r.stopAll()
	r.logf("starting kefu %s", strings.Join(r.roles, ", "))
	for _, role := range r.roles {
		if err := r.procs[role].start(); err != nil {
			return rep, err
		}
	}
	for _, role := range r.roles {
		if err := r.procs[role].waitReady(ctx, 90*time.Second); err != nil {
			return rep, err
		}
	}

	runID := make([]byte, 4)
	rand.Read(runID)
	prefix := "oFT" + hex.EncodeToString(runID) + "_"
	obs, err := newObserver(r.cluster.URLs(), "http://"+r.procs["feedback"].addr, fake, prefix, time.Now())
	if err != nil {
		return rep, err
	}
	defer obs.close()
	r.obs = obs

	codec, err := wechat.NewCodec(token, appID, aesKey)
	if err != nil {
		return rep, err
	}
	gen := newGenerator("http://"+r.procs["ingest"].addr+"/wechat/callback", codec, fake, appID, prefix, agents)

	r.logf("load: %.0f callbacks/s for %s", cfg.Rate, cfg.Duration)
	r.start = time.Now()
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() {
		gen.run(loadCtx, cfg.Rate)
		close(loadDone)
	}()
	rep.Faults = r.injectFaults(ctx, hasNotifier)
	<-loadDone
	r.logf("load over")
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	// Every role must be up for the verification, whatever the faults did.
	for _, role := range r.roles {
		if err := r.procs[role].waitReady(ctx, 60*time.Second); err != nil {
			return rep, err
		}
	}

	sessions, cbs := gen.results()
	rep.Sessions = sessions
	rep.Callbacks = countCallbacks(cbs)

	consumers := []consumerRef{{events.StreamWeChat, "feedback-sessions"}}
	if hasNotifier {
		consumers = append(consumers, consumerRef{events.StreamWeChat, "notifier-sessions"})
	}
	caughtUp := time.Now()
	// The wait ends CatchUpTimeout after the last sign of progress (the
	// pending counts change as the consumers work through a backlog), and
	// in any case after five times that.
	deadline, hardDeadline := caughtUp.Add(cfg.CatchUpTimeout), caughtUp.Add(5*cfg.CatchUpTimeout)
	lastWhy := ""
	for {
		v, why, err := r.verify(ctx, obs, consumers, cbs, hasNotifier)
		if err == nil && why == "" && v.OK() {
			rep = merge(rep, v)
			break
		}
		if err != nil {
			why = err.Error()
		} else if why == "" {
			why = strings.Join(v.failures(), "; ")
		}
		if why != lastWhy {
			r.logf("catching up: %s", why)
			lastWhy = why
			deadline = time.Now().Add(cfg.CatchUpTimeout)
		}
		if time.Now().After(deadline) || time.Now().After(hardDeadline) || ctx.Err() != nil {
			rep = merge(rep, v)
			rep.Problems = append(rep.Problems, fmt.Sprintf("not caught up %s after the load: %s", time.Since(caughtUp).Round(time.Second), why))
			break
		}
		time.Sleep(2 * time.Second)
	}
	rep.CatchUp = time.Since(caughtUp)
	r.logf("verified after %s", rep.CatchUp.Round(100*time.Millisecond))
	return rep, nil
}

// merge copies the verification's counts into the report.
func merge(rep, v Report) Report {
	rep.Stream, rep.StoredSessions, rep.StartUnknown = v.Stream, v.StoredSessions, v.StartUnknown
	rep.Created, rep.Closed = v.Created, v.Closed
	rep.Problems = append(rep.Problems, v.Problems...)
	return rep
}

// injectFaults runs the faults in order, each at its time or right after
// the previous one, whichever is later.
func (r *run) injectFaults(ctx context.Context, hasNotifier bool) []FaultRecord {
	var out []FaultRecord
	for _, f := range r.cfg.Faults {
		at := time.Duration(f.At * float64(r.cfg.Duration))
		select {
		case <-ctx.Done():
			return out
		case <-time.After(time.Until(r.start.Add(at))):
		}
		if f.Kind == KillNotifier && !hasNotifier {
			continue
		}
		rec := FaultRecord{Fault: f, At: time.Since(r.start)}
		r.logf("fault: %s", f.Describe())
		began := time.Now()
		rec.Note, rec.Err = r.inject(ctx, f)
		rec.Took = time.Since(began)
		if rec.Err != nil {
			r.logf("fault %s (%s): %v", f.Describe(), rec.Note, rec.Err)
		} else {
			r.logf("fault over: %s %s(back after %s)", f.Describe(), noteOf(rec.Note), rec.Took.Round(100*time.Millisecond))
		}
		out = append(out, rec)
	}
	return out
}

func (r *run) inject(ctx context.Context, f Fault) (note string, err error) {
	restart := func(p *process) error {
		if err := p.start(); err != nil {
			return err
		}
		return p.waitReady(ctx, 60*time.Second)
	}
	switch f.Kind {
	case KillNATSNode:
		name := f.node()
		if name == LeaderNode {
			if name, err = r.obs.streamLeader(ctx, events.StreamWeChat); err != nil {
				return "", err
			}
			note = "node " + name + ", the KEFU_WECHAT leader"
		} else {
			note = "node " + name
		}
		n, err := r.cluster.node(name)
		if err != nil {
			return note, err
		}
		n.stop()
		select {
		case <-ctx.Done():
			return note, ctx.Err()
		case <-time.After(r.cfg.NATSDown):
		}
		if err := n.start(); err != nil {
			return note, err
		}
		return note, r.cluster.waitHealthy(90 * time.Second)
	case KillFeedback, KillNotifier:
		p := r.procs[map[FaultKind]string{KillFeedback: "feedback", KillNotifier: "notifier"}[f.Kind]]
		if err := p.kill(); err != nil {
			return "", err
		}
		return "", restart(p)
	case RestartIngest:
		p := r.procs["ingest"]
		if err := p.term(30 * time.Second); err != nil {
			return "", err
		}
		return "", restart(p)
	}
	return "", fmt.Errorf("unknown fault %d", int(f.Kind))
}

func noteOf(note string) string {
	if note == "" {
		return ""
	}
	return "[" + note + "] "
}

func (r *run) stopAll() {
	var wg sync.WaitGroup
	for _, p := range r.procs {
		wg.Add(1)
		go func(p *process) {
			defer wg.Done()
			p.term(20 * time.Second)
		}(p)
	}
	wg.Wait()
}

// LogTails returns the end of every role's log, for a failed test.
func LogTails(dir string, n int) string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		p := &process{logPath: f}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), p.logTail(n))
	}
	return b.String()
}

func countCallbacks(cbs []callback) CallbackCounts {
	var c CallbackCounts
	for _, cb := range cbs {
		c.Sent++
		c.Attempts += cb.attempts
		c.Status503 += cb.status503
		c.Transport += cb.transport
		c.Other += cb.statusElse
		if cb.success {
			c.Success++
		} else {
			c.Failed++
		}
	}
	c.Retries = c.Attempts - c.Sent
	return c
}

// verify compares what the system holds with what the generator was told.
// why is non-empty while the consumers still have work.
func (r *run) verify(ctx context.Context, obs *observer, consumers []consumerRef, cbs []callback, hasNotifier bool) (rep Report, why string, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if ok, why := obs.idle(ctx, consumers); !ok {
		return rep, why, nil
	}
	stream, err := obs.sessionEvents(ctx)
	if err != nil {
		return rep, "", err
	}
	stored, err := obs.storedSessions(ctx)
	if err != nil {
		return rep, "", err
	}
	var outcomes map[string][]events.Notification
	var sent map[string]map[string]int
	if hasNotifier {
		if outcomes, err = obs.outcomes(ctx); err != nil {
			return rep, "", err
		}
		sent = obs.sentMessages()
	}
	return tally(cbs, stream, stored, outcomes, sent, hasNotifier), "", nil
}

// tally is the pure comparison behind verify.
func tally(cbs []callback, stream map[string]*streamEvent, stored map[string][]storedSession,
	outcomes map[string][]events.Notification, sent map[string]map[string]int, hasNotifier bool) Report {
	var rep Report
	for _, e := range stream {
		rep.Stream.Events += e.count
		rep.Stream.DistinctIDs++
		if e.count > 1 {
			rep.Stream.DuplicatedIDs++
		}
	}
	createOK := map[string]bool{}
	for _, cb := range cbs {
		_, inStream := stream[cb.id]
		switch {
		case cb.success && !inStream:
			rep.Stream.MissingSuccess++
		case !cb.success && inStream:
			rep.Stream.Unconfirmed++
		}
		if cb.event == eventCreate && cb.success {
			createOK[cb.openid] = true
		}
	}

	for _, cb := range cbs {
		if cb.event != eventClose {
			continue
		}
		n := len(stored[cb.openid])
		tallyOne(&rep.StoredSessions, cb.success, n)
		if n > 0 && createOK[cb.openid] && stored[cb.openid][0].StartedAt.IsZero() {
			rep.StartUnknown++
		}
	}

	if hasNotifier {
		other := 0
		for _, kinds := range sent {
			other += kinds["other"]
		}
		if other > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%d messages of an unknown kind sent to the run's customers", other))
		}
		for _, cb := range cbs {
			kind, t := events.NotifySessionCreated, &rep.Created
			if cb.event == eventClose {
				kind, t = events.NotifySessionClosed, &rep.Closed
			}
			n := sent[cb.openid][kind]
			if cb.success && n == 0 {
				lost, failed := false, false
				for _, o := range outcomes[cb.id] {
					if o.Outcome == events.OutcomeFailed {
						failed = true
						lost = lost || strings.HasPrefix(o.ErrMsg, "unknown outcome")
					}
				}
				switch {
				case lost:
					t.LostInCrashWindow++
					t.Expected++
					continue
				case failed:
					t.FailedOther++
				}
			}
			tallyOne(&t.Tally, cb.success, n)
		}
	}
	return rep
}

// tallyOne counts one expected-or-not item found n times.
func tallyOne(t *Tally, expected bool, n int) {
	if expected {
		t.Expected++
		if n == 0 {
			t.Missing++
		}
	} else if n > 0 {
		t.Unconfirmed++
	}
	if n > 0 {
		t.Actual++
	}
	if n > 1 {
		t.Duplicated++
	}
}
