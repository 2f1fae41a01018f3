// Command soak runs kefu's "nothing lost" fault suite at full length and
// prints one table of sent / stored / lost / doubled, one row per scenario
// (package internal/faulttest): the fault run (a NATS node shut down,
// feedback and notifier killed with SIGKILL, ingest restarted under
// callback load), PostgreSQL cut off for 5 minutes behind a proxy, 2,600
// Tucao posts while ingest is stopped, a one-day backfill, every
// "certainly not sent" failure of the notifier's sends, the access token
// revoked by another system (40001), the estimator's lease holder paused
// with SIGSTOP, and NATS stopped for 60 s under callbacks to an ingest with
// store and forward. kefu's roles run as OS processes of a freshly built
// binary against a three-node NATS cluster on loopback, PostgreSQL and the
// fakes of WeChat and Tucao.
//
//	go run ./bench/soak                                  # every scenario, at full length
//	go run ./bench/soak -scenarios store-outage,nats-stopped
//	go run ./bench/soak -short                           # the CI length of go test ./internal/faulttest
//	go run ./bench/soak -scale 0.2                       # outages and backlogs at a fifth
//	KEFU_TEST_PG_DSN=postgres://… go run ./bench/soak    # PostgreSQL for the store outage and the fault run
//
// The exit status is 1 when anything acknowledged was lost or doubled, or a
// scenario failed to run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kefu-io/kefu/internal/faulttest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	scenarios := fs.String("scenarios", strings.Join(faulttest.AllScenarios(), ","), "comma-separated scenarios to run")
	short := fs.Bool("short", false, "the CI length (what go test ./internal/faulttest runs); the flags below override it")
	scale := fs.Float64("scale", 1, "multiplies the store cut, the NATS stop and the Tucao post counts (0 < scale ≤ 1)")
	// The fault run.
	duration := fs.Duration("duration", 60*time.Second, "faults: length of the load")
	rate := fs.Float64("rate", 150, "faults: callbacks per second (two per session)")
	natsDown := fs.Duration("nats-down", 5*time.Second, "faults: how long the NATS node stays down")
	node := fs.String("node", faulttest.LeaderNode, "faults: NATS node to shut down: n1, n2, n3, or leader (the KEFU_WECHAT stream leader)")
	catchUp := fs.Duration("catch-up", 3*time.Minute, "faults: longest wait for the consumers after the load without progress")
	// The other scenarios.
	storeCut := fs.Duration("store-cut", 5*time.Minute, "store-outage: how long the proxy to PostgreSQL stays cut")
	natsStopped := fs.Duration("nats-stopped", 60*time.Second, "nats-stopped: how long NATS stays stopped")
	outageRate := fs.Float64("outage-rate", 20, "store-outage, nats-stopped: callbacks per second")
	tucaoPosts := fs.Int("tucao-posts", 2600, "tucao-downtime: posts Tucao gets while ingest is stopped")
	backfillPosts := fs.Int("backfill-posts", 500, "backfill: posts on the backfilled day (and on each day around it)")
	leaderPause := fs.Duration("leader-pause", 30*time.Second, "paused-leader: how long the lease holder stays stopped (its lease is 15 s)")
	revocations := fs.Int("revocations", 4, "token-40001: times another system revokes the token (one per 31 s)")
	dsn := fs.String("pg-dsn", os.Getenv("KEFU_TEST_PG_DSN"), "PostgreSQL DSN for the store outage and the fault run's feedback store; empty: the store outage is skipped and the fault run uses SQLite (default $KEFU_TEST_PG_DSN)")
	parallel := fs.Bool("parallel-faults", false, "run the fault run on a NATS cluster of its own alongside the other scenarios (default with -short)")
	binary := fs.String("binary", "", "a built kefu to run instead of building cmd/kefu")
	keep := fs.Bool("keep", false, "keep the work directory (NATS stores, role data and logs)")
	if err := fs.Parse(args); err != nil {
		return 2, nil
	}
	if *duration <= 0 || *rate <= 0 || *scale <= 0 || *scale > 1 {
		return 2, fmt.Errorf("-duration and -rate must be positive, -scale in (0, 1]")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	dir, err := os.MkdirTemp("", "kefu-soak-")
	if err != nil {
		return 1, err
	}
	if *keep {
		fmt.Println("work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	cfg := faulttest.SuiteConfig{
		Faults: faulttest.Config{Duration: *duration, Rate: *rate, Faults: faulttest.DefaultFaults(),
			NATSDown: *natsDown, CatchUpTimeout: *catchUp},
		StoreCut: scaled(*storeCut, *scale), NATSStopped: scaled(*natsStopped, *scale), Rate: *outageRate,
		TucaoBefore: max(1, int(250**scale)), TucaoDowntimePosts: max(1, int(float64(*tucaoPosts)**scale)),
		BackfillPosts: max(1, int(float64(*backfillPosts)**scale)), LeaderPause: *leaderPause,
		TokenRevocations: *revocations, ParallelFaults: *parallel,
	}
	if *short {
		s := faulttest.ShortSuite(dir)
		override := func(name string, apply func()) {
			if set[name] {
				apply()
			}
		}
		override("duration", func() { s.Faults.Duration = *duration })
		override("rate", func() { s.Faults.Rate = *rate })
		override("nats-down", func() { s.Faults.NATSDown = *natsDown })
		override("catch-up", func() { s.Faults.CatchUpTimeout = *catchUp })
		override("store-cut", func() { s.StoreCut = *storeCut })
		override("nats-stopped", func() { s.NATSStopped = *natsStopped })
		override("outage-rate", func() { s.Rate = *outageRate })
		override("tucao-posts", func() { s.TucaoDowntimePosts = *tucaoPosts })
		override("backfill-posts", func() { s.BackfillPosts = *backfillPosts })
		override("leader-pause", func() { s.LeaderPause = *leaderPause })
		override("revocations", func() { s.TokenRevocations = *revocations })
		override("parallel-faults", func() { s.ParallelFaults = *parallel })
		cfg = s
	}
	for i := range cfg.Faults.Faults {
		if cfg.Faults.Faults[i].Kind == faulttest.KillNATSNode {
			cfg.Faults.Faults[i].Node = *node
		}
	}
	cfg.Scenarios = strings.Split(*scenarios, ",")
	cfg.Faults.FeedbackDSN, cfg.PostgresDSN = *dsn, *dsn
	cfg.Dir, cfg.Binary, cfg.Log = dir, *binary, os.Stdout

	began := time.Now()
	rep, err := faulttest.RunSuite(ctx, cfg)
	fmt.Println()
	rep.WriteTable(os.Stdout)
	fmt.Printf("\nsuite took %s\n", time.Since(began).Round(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, tails(dir))
		return 1, err
	}
	if !rep.OK() {
		fmt.Fprintln(os.Stderr, tails(dir))
		return 1, nil
	}
	return 0, nil
}

func scaled(d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * f).Round(time.Second)
}

// tails is the end of every process log of every scenario.
func tails(dir string) string {
	var b strings.Builder
	for _, name := range faulttest.AllScenarios() {
		b.WriteString(faulttest.LogTails(dir+"/"+name, 3000))
	}
	return b.String()
}
