package faulttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scenarios of the suite, in the order RunSuite runs them.
const (
	// ScenarioFaults is Run: NATS node, feedback, notifier and ingest
	// killed under callback load.
	ScenarioFaults = "faults"
	// ScenarioStoreOutage cuts a TCP proxy between feedback and
	// PostgreSQL while posts and sessions flow, then restores it.
	ScenarioStoreOutage = "store-outage"
	// ScenarioTucaoDowntime stops ingest while Tucao gets a backlog of
	// posts, then starts it again.
	ScenarioTucaoDowntime = "tucao-downtime"
	// ScenarioBackfill runs `kefu ingest --tucao-backfill --from D --to D`.
	ScenarioBackfill = "backfill"
	// ScenarioNotSent injects every "certainly not sent" failure the fake
	// WeChat can play into the notifier's sends.
	ScenarioNotSent = "notifier-not-sent"
	// ScenarioToken revokes the notifier's access token from "another
	// system" (errcode 40001) while messages flow.
	ScenarioToken = "token-40001"
	// ScenarioPausedLeader stops the estimator holding the lease with
	// SIGSTOP past the lease's TTL, lets the other take over, and resumes
	// it with SIGCONT.
	ScenarioPausedLeader = "paused-leader"
	// ScenarioNATSStopped stops NATS under callbacks to an ingest with
	// KEFU_INGEST_STORE_FORWARD and starts it again.
	ScenarioNATSStopped = "nats-stopped"
)

// AllScenarios lists every scenario in the order RunSuite runs them.
func AllScenarios() []string {
	// The notifier's scenarios come first on the shared cluster: the
	// others publish session events that no notifier of theirs consumes.
	return []string{ScenarioFaults, ScenarioNotSent, ScenarioToken, ScenarioStoreOutage,
		ScenarioTucaoDowntime, ScenarioBackfill, ScenarioPausedLeader, ScenarioNATSStopped}
}

// SuiteConfig configures RunSuite. Zero durations and counts take the
// full-length values (FullSuite); ShortSuite is the test's version.
type SuiteConfig struct {
	// Scenarios to run, by name (nil: AllScenarios).
	Scenarios []string
	// Faults configures ScenarioFaults; its Dir, Binary and Log are the
	// suite's.
	Faults Config
	// PostgresDSN is the PostgreSQL the store outage puts a proxy in front
	// of; "" skips ScenarioStoreOutage with a note in its row.
	PostgresDSN string
	// StoreCut is how long the proxy stays cut (default 5m).
	StoreCut time.Duration
	// NATSStopped is how long NATS stays stopped (default 60s).
	NATSStopped time.Duration
	// Rate is callbacks per second during the store outage and the NATS
	// stop (default 20).
	Rate float64
	// TucaoBefore and TucaoDowntimePosts are the posts Tucao holds
	// before ingest stops and gets while it is stopped (default 250 and
	// 2600).
	TucaoBefore, TucaoDowntimePosts int
	// BackfillPosts is the number of posts on the backfilled day; the
	// days before and after get as many (default 500).
	BackfillPosts int
	// NotSentRepeat is how many times each "certainly not sent" failure
	// is injected (default 3).
	NotSentRepeat int
	// TokenRevocations is how many times another system revokes the token
	// (default 4; WeChat allows one forced refresh per 30 s).
	TokenRevocations int
	// LeaderPause is how long the lease holder stays stopped (default
	// 30s, twice the estimator's 15 s lease).
	LeaderPause time.Duration
	// CatchUp bounds every wait for the system to settle (default 5m).
	CatchUp time.Duration
	// Dir holds the binary, NATS stores, role data and logs. Required.
	Dir string
	// Binary is a built kefu; "" builds cmd/kefu into Dir.
	Binary string
	// ParallelFaults runs ScenarioFaults on a NATS cluster of its own,
	// then ScenarioNATSStopped (which has its own server anyway), while
	// the other scenarios run one after the other on the shared cluster:
	// the fault run waits out the notifier's 60 s AckWait, which the
	// others then use. Their durable consumers are per cluster, so they do
	// not meet; they share the CPU, which makes the timings noisier.
	ParallelFaults bool
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// ShortSuite is the suite at CI length, as the package's test runs it:
// every scenario, the faults scenario at 50 callbacks/s for 20 s, outages
// of seconds instead of minutes, a tenth of the Tucao backlog, one token
// revocation, the fault run alongside the rest (ParallelFaults). The
// caller sets PostgresDSN, Faults.FeedbackDSN and Log.
func ShortSuite(dir string) SuiteConfig {
	return SuiteConfig{
		Faults: Config{
			Duration: 20 * time.Second,
			Rate:     50,
			// The faults that leave messages unacknowledged come first:
			// what a killed notifier held returns only after its 60 s
			// AckWait (the floor of this scenario's length), and the wait
			// for it then overlaps the rest of the load.
			Faults: []Fault{
				{Kind: KillNotifier, At: 0.05},
				{Kind: KillNATSNode, At: 0.1, Node: LeaderNode},
				{Kind: KillFeedback, At: 0.4},
				{Kind: RestartIngest, At: 0.6},
			},
			NATSDown:       3 * time.Second,
			CatchUpTimeout: 150 * time.Second,
		},
		StoreCut:           10 * time.Second,
		NATSStopped:        8 * time.Second,
		Rate:               20,
		TucaoBefore:        25,
		TucaoDowntimePosts: 260,
		BackfillPosts:      40,
		NotSentRepeat:      2,
		TokenRevocations:   1,
		LeaderPause:        18 * time.Second,
		CatchUp:            2 * time.Minute,
		ParallelFaults:     true,
		Dir:                dir,
	}
}

func (c *SuiteConfig) setDefaults() {
	if c.Scenarios == nil {
		c.Scenarios = AllScenarios()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&c.StoreCut, 5*time.Minute)
	def(&c.NATSStopped, 60*time.Second)
	def(&c.LeaderPause, 30*time.Second)
	def(&c.CatchUp, 5*time.Minute)
	if c.Rate <= 0 {
		c.Rate = 20
	}
	defInt(&c.TucaoBefore, 250)
	defInt(&c.TucaoDowntimePosts, 2600)
	defInt(&c.BackfillPosts, 500)
	defInt(&c.NotSentRepeat, 3)
	defInt(&c.TokenRevocations, 4)
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Row is one scenario's line of the suite's table.
type Row struct {
	Scenario string
	// Sent counts what the outside world was told was accepted (callbacks
	// answered success, posts Tucao holds, messages to deliver);
	// Stored what arrived (stored, or delivered by WeChat); Lost what was
	// sent and did not arrive; Doubled what arrived more than once.
	Sent, Stored, Lost, Doubled int
	// Detail is a short note: the fault's length, the dead letters, the
	// stale writes refused.
	Detail string
	// Skipped says why the scenario did not run (its counts are zero).
	Skipped string
	// Err is a scenario that could not be set up or driven.
	Err error
	// Took is the scenario's length, setup included.
	Took time.Duration
}

// OK reports whether the row shows nothing lost, nothing doubled and no
// error.
func (r Row) OK() bool { return r.Err == nil && r.Lost == 0 && r.Doubled == 0 }

// SuiteReport is the outcome of RunSuite.
type SuiteReport struct {
	Rows []Row
	// Faults is ScenarioFaults' detailed report (nil when not run).
	Faults *Report
}

// OK reports whether every row is OK.
func (s SuiteReport) OK() bool {
	for _, r := range s.Rows {
		if !r.OK() {
			return false
		}
	}
	return true
}

// suite is the state RunSuite shares between scenarios: one binary, one
// NATS cluster.
type suite struct {
	cfg     SuiteConfig
	bin     string
	cluster *cluster
	logMu   sync.Mutex
	start   time.Time
}

func (s *suite) log(name, format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.cfg.Log, "%6.1fs %-18s %s\n", time.Since(s.start).Seconds(), name, fmt.Sprintf(format, args...))
}

// RunSuite runs the chosen scenarios one after the other on one kefu
// binary and one three-node NATS cluster (ScenarioNATSStopped brings a
// server of its own, which it stops), each with its own kefu processes,
// fakes and data directories. The error is for a suite that could not be
// set up; a scenario that fails has its error in its row.
func RunSuite(ctx context.Context, cfg SuiteConfig) (SuiteReport, error) {
	cfg.setDefaults()
	var rep SuiteReport
	if cfg.Dir == "" {
		return rep, errors.New("faulttest: SuiteConfig.Dir is required")
	}
	for _, name := range cfg.Scenarios {
		if !slices.Contains(AllScenarios(), name) {
			return rep, fmt.Errorf("faulttest: unknown scenario %q (known: %s)", name, strings.Join(AllScenarios(), ", "))
		}
	}
	s := &suite{cfg: cfg, start: time.Now()}
	s.bin = cfg.Binary
	if s.bin == "" {
		s.log("setup", "building kefu")
		var err error
		if s.bin, err = BuildKefu(ctx, cfg.Dir); err != nil {
			return rep, err
		}
	}
	s.log("setup", "starting a 3-node NATS cluster")
	var err error
	if s.cluster, err = startCluster(filepath.Join(cfg.Dir, "nats"), 3); err != nil {
		return rep, err
	}
	defer s.cluster.shutdown()

	run := func(name string) Row {
		began := time.Now()
		s.log(name, "begins")
		row := s.runScenario(ctx, name, &rep)
		row.Scenario, row.Took = name, time.Since(began)
		switch {
		case row.Err != nil:
			s.log(name, "ERROR: %v", row.Err)
		case row.Skipped != "":
			s.log(name, "skipped: %s", row.Skipped)
		default:
			s.log(name, "sent %d, stored %d, lost %d, doubled %d; %s (%s)", row.Sent, row.Stored, row.Lost, row.Doubled, row.Detail, row.Took.Round(time.Second))
		}
		return row
	}
	// With ParallelFaults the scenarios that bring a NATS of their own
	// run in a second lane, beside those on the shared cluster.
	own := func(name string) bool {
		return cfg.ParallelFaults && (name == ScenarioFaults || name == ScenarioNATSStopped)
	}
	rows := map[string]Row{}
	var mu sync.Mutex
	lane := func(pick func(string) bool, shared bool) error {
		for _, name := range AllScenarios() {
			if !slices.Contains(cfg.Scenarios, name) || !pick(name) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			row := run(name)
			mu.Lock()
			rows[name] = row
			mu.Unlock()
			if shared {
				if err := s.cluster.waitHealthy(90 * time.Second); err != nil {
					return fmt.Errorf("after %s: %w", name, err)
				}
			}
		}
		return nil
	}
	second := make(chan error, 1)
	go func() { second <- lane(own, false) }()
	err = lane(func(name string) bool { return !own(name) }, true)
	err = errors.Join(err, <-second)
	for _, name := range AllScenarios() {
		if row, ok := rows[name]; ok {
			rep.Rows = append(rep.Rows, row)
		}
	}
	return rep, err
}

func (s *suite) runScenario(ctx context.Context, name string, rep *SuiteReport) Row {
	dir := filepath.Join(s.cfg.Dir, name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Row{Err: err}
	}
	sc := &scenario{suite: s, name: name, dir: dir}
	defer sc.stopAll()
	if name == ScenarioFaults {
		return sc.faults(ctx, rep, !s.cfg.ParallelFaults)
	}
	run, ok := scenarioRuns[name]
	if !ok {
		return Row{Err: fmt.Errorf("unknown scenario %q", name)}
	}
	return run(sc, ctx)
}

// scenarioRuns are the scenarios other than ScenarioFaults, by name.
var scenarioRuns = map[string]func(*scenario, context.Context) Row{
	ScenarioStoreOutage:   (*scenario).storeOutage,
	ScenarioTucaoDowntime: (*scenario).tucaoDowntime,
	ScenarioBackfill:      (*scenario).backfill,
	ScenarioNotSent:       (*scenario).notSent,
	ScenarioToken:         (*scenario).tokenRace,
	ScenarioPausedLeader:  (*scenario).pausedLeader,
	ScenarioNATSStopped:   (*scenario).natsStopped,
}

// scenario is one scenario's processes and files.
type scenario struct {
	*suite
	name  string
	dir   string
	procs []*process
}

func (sc *scenario) logf(format string, args ...any) { sc.log(sc.name, format, args...) }

func (sc *scenario) stopAll() {
	var wg sync.WaitGroup
	for _, p := range sc.procs {
		wg.Go(func() { p.term(20 * time.Second) })
	}
	wg.Wait()
}

// roleOpts are the settings of one kefu process of a scenario.
type roleOpts struct {
	name     string // of the process, unique in the scenario ("ingest", "estimator-a")
	role     string // kefu's role
	natsURL  string // "" is the suite's cluster
	replicas string // "" is 3
	wechat   string // the fake WeChat's URL, if any
	env      map[string]string
}

// startRole starts a kefu process and waits until it is ready.
func (sc *scenario) startRole(ctx context.Context, o roleOpts) (*process, error) {
	env, err := sc.roleEnv(o)
	if err != nil {
		return nil, err
	}
	p := &process{role: o.role, bin: sc.bin, env: roleEnv(env), addr: env["KEFU_HTTP_ADDR"],
		logPath: filepath.Join(sc.dir, o.name+".log")}
	if err := p.start(); err != nil {
		return nil, err
	}
	sc.procs = append(sc.procs, p)
	if err := p.waitReady(ctx, 90*time.Second); err != nil {
		return p, err
	}
	return p, nil
}

// roleEnv is the environment of one kefu process of the scenario.
func (sc *scenario) roleEnv(o roleOpts) (map[string]string, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	if o.natsURL == "" {
		o.natsURL = sc.cluster.URLs()
	}
	if o.replicas == "" {
		o.replicas = "3"
	}
	env := map[string]string{
		"KEFU_NATS_URL":          o.natsURL,
		"KEFU_NATS_REPLICAS":     o.replicas,
		"KEFU_HTTP_ADDR":         addr,
		"KEFU_DATA_DIR":          filepath.Join(sc.dir, o.name),
		"KEFU_LOG_LEVEL":         "warn",
		"KEFU_WECHAT_APPID":      appID,
		"KEFU_WECHAT_SECRET":     appSecret,
		"KEFU_WECHAT_TOKEN":      token,
		"KEFU_WECHAT_AES_KEY":    aesKey,
		"KEFU_WECHAT_TRANSFER":   "false",
		"KEFU_API_TOKEN":         apiToken,
		"KEFU_PUBLIC_RATE_LIMIT": "0",
	}
	if o.wechat != "" {
		env["KEFU_WECHAT_API_BASE"] = o.wechat
	}
	for k, v := range o.env {
		env[k] = v
	}
	if err := os.MkdirAll(env["KEFU_DATA_DIR"], 0o750); err != nil {
		return nil, err
	}
	return env, nil
}

// restart starts a stopped process again and waits until it is ready.
func (sc *scenario) restart(ctx context.Context, p *process) error {
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(ctx, 90*time.Second)
}
