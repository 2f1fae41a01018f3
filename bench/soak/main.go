// Command soak runs kefu's fault scenario at full length and prints its
// counts: a three-node NATS JetStream cluster on loopback, kefu ingest,
// feedback and notifier as separate processes, signed WeChat session
// callbacks at a steady rate, and during the load a NATS node shut down
// and restarted, feedback and notifier killed with SIGKILL and restarted,
// ingest restarted with SIGTERM. It then checks that every callback
// answered "success" is in the stream, the feedback store and the
// customer's messages exactly once (package internal/faulttest).
//
//	go run ./bench/soak
//	go run ./bench/soak -duration 120s -rate 200
//	KEFU_TEST_PG_DSN=postgres://… go run ./bench/soak   # feedback on PostgreSQL
//
// The exit status is 1 when anything acknowledged was lost or doubled.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
	duration := fs.Duration("duration", 60*time.Second, "length of the load")
	rate := fs.Float64("rate", 150, "callbacks per second (two per session)")
	natsDown := fs.Duration("nats-down", 5*time.Second, "how long the NATS node stays down")
	node := fs.String("node", faulttest.LeaderNode, "NATS node to shut down: n1, n2, n3, or leader (the KEFU_WECHAT stream leader)")
	catchUp := fs.Duration("catch-up", 3*time.Minute, "longest wait for the consumers after the load")
	dsn := fs.String("pg-dsn", os.Getenv("KEFU_TEST_PG_DSN"), "PostgreSQL DSN for the feedback store; empty: SQLite (default $KEFU_TEST_PG_DSN)")
	keep := fs.Bool("keep", false, "keep the work directory (NATS stores, role data and logs)")
	if err := fs.Parse(args); err != nil {
		return 2, nil
	}
	if *duration <= 0 || *rate <= 0 {
		return 2, fmt.Errorf("-duration and -rate must be positive")
	}

	dir, err := os.MkdirTemp("", "kefu-soak-")
	if err != nil {
		return 1, err
	}
	if *keep {
		fmt.Println("work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	faults := faulttest.DefaultFaults()
	for i := range faults {
		if faults[i].Kind == faulttest.KillNATSNode {
			faults[i].Node = *node
		}
	}
	rep, err := faulttest.Run(ctx, faulttest.Config{
		Duration: *duration, Rate: *rate, Faults: faults, NATSDown: *natsDown,
		CatchUpTimeout: *catchUp, FeedbackDSN: *dsn, Dir: dir, Log: os.Stdout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, faulttest.LogTails(dir, 3000))
		return 1, err
	}
	fmt.Println()
	rep.WriteTable(os.Stdout)
	if !rep.OK() {
		fmt.Fprintln(os.Stderr, faulttest.LogTails(dir, 3000))
		return 1, nil
	}
	return 0, nil
}
