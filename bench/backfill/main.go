// Command backfill benchmarks kefu's Tucao backfill path end to end: the
// fake Tucao server (internal/tucao/tucaotest), the Tucao client, the
// ingest poller's Backfill publishing to an embedded JetStream with file
// storage, and the feedback service's durable consumer writing to SQLite or
// PostgreSQL.
//
// Two measurements, selected by -mode:
//
//   - throughput: the rate limit is off on the fake and in the client;
//     -posts posts are backfilled and the figure is posts per second until
//     the store holds every one of them, which is then checked.
//   - budget: the real limit (100 requests per minute) on the fake and the
//     client's own window limiter; a backfill larger than the run can fetch
//     runs for -budget-minutes and the figure is the share of the budget
//     it used in 60-second windows, from the client's own record of each
//     request it sent.
//
// Usage (README.md has the figures):
//
//	go run ./bench/backfill -mode throughput -store sqlite
//	go run ./bench/backfill -mode throughput -store postgres -pg-dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	go run ./bench/backfill -mode budget -budget-minutes 10
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"

	"github.com/kefu-io/kefu/internal/tucao"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	posts         int
	store         string
	pgDSN         string
	budgetMinutes int
	mode          string
	clock         string
	seed          int64
	cpuprofile    string
	// perMinute is the budget of the budget run: the service's 100; the
	// tests lower it to keep the run small.
	perMinute int
}

// defaultPGDSNEnv is read when -pg-dsn is not given: the variable the
// PostgreSQL store tests use, so CI's database serves both.
const defaultPGDSNEnv = "KEFU_TEST_PG_DSN"

func parse(args []string) (options, error) {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	o := options{perMinute: tucao.DefaultRequestsPerMinute}
	fs.IntVar(&o.posts, "posts", 100_000, "posts on the fake Tucao for the throughput run")
	fs.StringVar(&o.store, "store", "sqlite", "feedback store: sqlite (a temporary file) or postgres (a fresh schema, dropped at the end)")
	fs.StringVar(&o.pgDSN, "pg-dsn", os.Getenv(defaultPGDSNEnv), "PostgreSQL DSN for -store postgres (default $"+defaultPGDSNEnv+")")
	fs.IntVar(&o.budgetMinutes, "budget-minutes", 3, "minutes the budget run lasts, on its clock")
	fs.StringVar(&o.mode, "mode", "both", "throughput, budget or both")
	fs.StringVar(&o.clock, "clock", clockSkip, "clock of the budget run: skip (real time, limiter waits skipped), fake (tucao.FakeClock, auto-advance) or real")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the generated posts")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of each run to <value>-<mode>.pprof")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("parse flags: unexpected arguments %q", fs.Args())
	}
	var errs []error
	if o.posts < 1 {
		errs = append(errs, errors.New("-posts must be at least 1"))
	}
	if o.budgetMinutes < 1 {
		errs = append(errs, errors.New("-budget-minutes must be at least 1"))
	}
	switch o.store {
	case "sqlite":
	case "postgres":
		if o.pgDSN == "" {
			errs = append(errs, errors.New("-store postgres needs -pg-dsn or $"+defaultPGDSNEnv))
		}
	default:
		errs = append(errs, fmt.Errorf("-store %q: want sqlite or postgres", o.store))
	}
	switch o.mode {
	case "throughput", "budget", "both":
	default:
		errs = append(errs, fmt.Errorf("-mode %q: want throughput, budget or both", o.mode))
	}
	switch o.clock {
	case clockSkip, clockFake, clockReal:
	default:
		errs = append(errs, fmt.Errorf("-clock %q: want %s, %s or %s", o.clock, clockSkip, clockFake, clockReal))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	if o.mode == "throughput" || o.mode == "both" {
		res, err := runThroughput(ctx, o)
		if err != nil {
			return err
		}
		res.print(out)
	}
	if o.mode == "budget" || o.mode == "both" {
		if o.mode == "both" {
			fmt.Fprintln(out)
		}
		res, err := runBudget(ctx, o)
		if err != nil {
			return err
		}
		res.print(out)
	}
	return nil
}

// storeName is how reports name the store, PostgreSQL with its schema.
func storeName(o options, schema string) string {
	if o.store == "postgres" {
		return "postgres (schema " + schema + ")"
	}
	return o.store
}

// startProfile starts a CPU profile of the measured part of a run when
// -cpuprofile is set; the returned function stops it and may be called more
// than once.
func startProfile(o options, mode string) (stop func() error, err error) {
	if o.cpuprofile == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(o.cpuprofile + "-" + mode + ".pprof")
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return sync.OnceValue(func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		return nil
	}), nil
}
