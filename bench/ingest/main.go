// Command ingest is kefu's ingest load benchmark. It sends signed WeChat
// callbacks over HTTP, from a separate load-generator process keeping
// -conns keep-alive connections busy, to two endpoints in turn: kefu's real
// ingest service (services/ingest publishing through internal/bus, wired as
// `kefu all` wires it) and a minimal baseline (signature check, XML parse,
// synchronous JetStream publish with Nats-Msg-Id, nothing else), both on
// one embedded JetStream server with file storage. It reports requests/s,
// p50 and p99 of each, the ratio, the CPU each side used, and checks that
// every callback answered "success" is in its stream. With -rss it then
// builds and runs `kefu all` as its own process under the same load and
// reports its peak resident memory.
//
//	go run ./bench/ingest -duration 15s -mode plain
//	go run ./bench/ingest -duration 15s -mode safe -rss
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		exitLoadgen(os.Args[2:])
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	duration   time.Duration
	warmup     time.Duration
	conns      int
	mode       wechat.Mode
	rounds     int
	rss        bool
	cpuprofile string
	memprofile string
	poolRPS    int
	timeout    time.Duration
	kefuEnv    map[string]string
	// baselineGuard gives the baseline kefu's plain-mode replay guard.
	baselineGuard bool
}

func parse(args []string) (options, error) {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	var o options
	var mode string
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured window of every run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "load before every measured window, not counted")
	fs.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections")
	fs.StringVar(&mode, "mode", "plain", "callback encryption: plain or safe")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds of baseline then kefu; 0 skips the comparison")
	fs.BoolVar(&o.rss, "rss", false, "also build `kefu all`, load it as its own process and report its RSS")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process for every measured window to <value>-<endpoint>-<round>.pprof")
	fs.StringVar(&o.memprofile, "memprofile", "", "write allocation profiles of this process at the start and end of every measured window to <value>-<endpoint>-<round>.allocs[.start]")
	fs.IntVar(&o.poolRPS, "pool-rps", 20_000, "requests/s the pre-signed pool is sized for; beyond it requests are signed on the fly")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout (WeChat's)")
	fs.BoolVar(&o.baselineGuard, "baseline-guard", false, "plain mode: the baseline also keeps each signature's body hash in a KV bucket, as kefu does (off: the cost of kefu's replay guard shows in the ratio)")
	var kefuEnv string
	fs.StringVar(&kefuEnv, "kefu-env", "", "extra environment of `kefu all` with -rss, comma-separated (e.g. GOMEMLIMIT=128MiB)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	o.kefuEnv = map[string]string{}
	for _, kv := range strings.Split(kefuEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return o, fmt.Errorf("parse flags: -kefu-env %q: want KEY=VALUE", kv)
		}
		o.kefuEnv[k] = v
	}
	var err error
	if o.mode, err = parseMode(mode); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	if o.duration <= 0 || o.warmup < 0 || o.conns < 1 || o.rounds < 0 || o.poolRPS < 0 {
		return o, fmt.Errorf("parse flags: duration > 0, warmup ≥ 0, conns ≥ 1, rounds ≥ 0 required")
	}
	return o, nil
}

func (o options) load(url string, phase int) loadConfig {
	return loadConfig{URL: url, Mode: o.mode, Conns: o.conns, Warmup: o.warmup, Duration: o.duration,
		MsgIDBase: msgIDBase(phase), Pool: int(float64(o.poolRPS) * (o.warmup + o.duration).Seconds()),
		Timeout: o.timeout}
}

// msgIDBase gives every phase its own range of MsgIds, so no request of the
// run is a duplicate of another.
func msgIDBase(phase int) int64 { return 6_000_000_000_000_000_000 + int64(phase)*1_000_000_000 }

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "kefu ingest load benchmark: mode %s, %d connections, %s measured after %s warm-up per run, %d round(s)\n",
		o.mode, o.conns, o.duration, o.warmup, o.rounds)
	fmt.Fprintf(out, "%s, %d CPUs, GOMAXPROCS %d; load generator in its own process\n\n",
		runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if o.rounds > 0 {
		if err := compare(ctx, o, out); err != nil {
			return err
		}
	}
	if o.rss {
		if err := measureKefuAll(ctx, o, out); err != nil {
			return err
		}
	}
	return nil
}

// phaseRecord is one measured run against one endpoint.
type phaseRecord struct {
	endpoint   string
	round      int
	msgIDBase  int64
	load       loadResult
	usage      processUsage
	machineCPU float64 // CPU seconds the whole machine was busy in the window
	first      uint64  // stream sequence range the run wrote
	last       uint64
	check      streamCheck
}

func compare(ctx context.Context, o options, out io.Writer) error {
	p, err := startInProcess(ctx, o.mode, o.baselineGuard)
	if err != nil {
		return err
	}
	defer p.Close()
	var records []*phaseRecord
	phase := 0
	for round := 1; round <= o.rounds; round++ {
		for _, t := range []target{p.baseline, p.kefu} {
			phase++
			rec := &phaseRecord{endpoint: t.name, round: round, msgIDBase: msgIDBase(phase)}
			if err := t.freshStream(ctx); err != nil {
				return err
			}
			state, err := streamState(ctx, t.js, t.stream)
			if err != nil {
				return err
			}
			rec.first = state.LastSeq + 1
			cpuProfile, allocsProfile := "", ""
			if o.cpuprofile != "" {
				cpuProfile = fmt.Sprintf("%s-%s-%d.pprof", o.cpuprofile, t.name, round)
			}
			if o.memprofile != "" {
				allocsProfile = fmt.Sprintf("%s-%s-%d.allocs", o.memprofile, t.name, round)
			}
			fmt.Fprintf(out, "round %d: %s …\n", round, t.name)
			// Every run starts from a collected heap, whatever the previous left.
			runtime.GC()
			hooks := withMachineCPU(usageHooks(cpuProfile, allocsProfile, &rec.usage), &rec.machineCPU)
			if rec.load, err = runLoadPhase(ctx, o.load(t.url, phase), hooks); err != nil {
				return fmt.Errorf("%s round %d: %w", t.name, round, err)
			}
			// Checked once the run is over, so reading the stream costs it nothing.
			if rec.check, rec.last, err = checkStream(ctx, t.js, t.stream, rec.first, rec.load, rec.msgIDBase); err != nil {
				return err
			}
			// Gone before the next run, so that run does not carry this
			// one's de-duplication window in its heap.
			if err := t.js.DeleteStream(ctx, t.stream); err != nil {
				return fmt.Errorf("delete stream %s: %w", t.stream, err)
			}
			records = append(records, rec)
		}
	}
	fmt.Fprintln(out)
	printComparison(out, o, records)
	return nil
}

// summary aggregates runs of one endpoint.
type summary struct {
	ok, errors int64
	seconds    float64
	latencies  []int64
	usage      processUsage
	clientCPU  float64
	machineCPU float64
	onTheFly   int64
}

func summarize(recs []*phaseRecord) summary {
	var s summary
	for _, r := range recs {
		s.ok += r.load.OK
		for _, n := range r.load.Errors {
			s.errors += n
		}
		s.seconds += r.load.WindowSeconds
		s.latencies = append(s.latencies, r.load.LatenciesNS...)
		s.usage.CPUSeconds += r.usage.CPUSeconds
		s.usage.AllocBytes += r.usage.AllocBytes
		s.usage.AllocObjects += r.usage.AllocObjects
		s.usage.GCCycles += r.usage.GCCycles
		s.usage.HeapLive = max(s.usage.HeapLive, r.usage.HeapLive)
		s.clientCPU += r.load.CPUSeconds
		s.machineCPU += r.machineCPU
		s.onTheFly += r.load.OnTheFly
	}
	sortLatencies(s.latencies)
	return s
}

func (s summary) rps() float64 { return float64(s.ok) / s.seconds }

const tableHeader = "%-6s %-9s %7s %8s %8s %8s %6s %11s %12s %11s %4s %5s %6s\n"

func printTableHeader(out io.Writer, usageLabel string) {
	fmt.Fprintf(out, tableHeader, "round", "endpoint", "req/s", "p50", "p90", "p99", "errors",
		usageLabel+" CPU", "alloc/req", "client CPU", "GCs", "heap", "others")
}

func printRow(out io.Writer, round, endpoint string, s summary) {
	n := float64(s.ok + s.errors)
	alloc := "—"
	if s.usage.AllocBytes > 0 {
		alloc = fmt.Sprintf("%.1fkB/%.0f", float64(s.usage.AllocBytes)/n/1024, float64(s.usage.AllocObjects)/n)
	}
	gcs, heap := "—", "—"
	if s.usage.AllocBytes > 0 {
		gcs, heap = fmt.Sprint(s.usage.GCCycles), fmt.Sprintf("%.0fM", float64(s.usage.HeapLive)/(1<<20))
	}
	fmt.Fprintf(out, tableHeader, round, endpoint, fmt.Sprintf("%.0f", s.rps()),
		fmtDur(percentile(s.latencies, 0.50)), fmtDur(percentile(s.latencies, 0.90)), fmtDur(percentile(s.latencies, 0.99)),
		fmt.Sprint(s.errors),
		fmt.Sprintf("%.0fµs/req", s.usage.CPUSeconds/n*1e6), alloc,
		fmt.Sprintf("%.0fµs/req", s.clientCPU/n*1e6), gcs, heap,
		fmt.Sprintf("%.2f", max(0, s.machineCPU-s.usage.CPUSeconds-s.clientCPU)/s.seconds))
}

func printComparison(out io.Writer, o options, records []*phaseRecord) {
	printTableHeader(out, "server")
	byEndpoint := map[string][]*phaseRecord{}
	for _, r := range records {
		printRow(out, fmt.Sprint(r.round), r.endpoint, summarize([]*phaseRecord{r}))
		byEndpoint[r.endpoint] = append(byEndpoint[r.endpoint], r)
	}
	base, kefu := summarize(byEndpoint["baseline"]), summarize(byEndpoint["kefu"])
	printRow(out, "all", "baseline", base)
	printRow(out, "all", "kefu", kefu)
	fmt.Fprintln(out, "\n(server CPU: this process — the endpoint under test, its NATS client and the embedded")
	fmt.Fprintln(out, " JetStream server — per request inside the measured windows; alloc/req: bytes/objects")
	fmt.Fprintln(out, " allocated by this process per request; heap: live heap after the last GC (largest")
	fmt.Fprintln(out, " of the runs); client CPU: the load generator's process;")
	fmt.Fprintln(out, " others: cores busy with other processes on the machine, on average — 0 on a quiet machine)")

	rpsRatio := kefu.rps() / base.rps()
	p50Ratio := float64(percentile(kefu.latencies, 0.50)) / float64(percentile(base.latencies, 0.50))
	p99Ratio := float64(percentile(kefu.latencies, 0.99)) / float64(percentile(base.latencies, 0.99))
	fmt.Fprintf(out, "\nkefu/baseline: throughput %.2f×, p50 %.2f×, p99 %.2f×, server CPU per request %.2f×\n",
		rpsRatio, p50Ratio, p99Ratio,
		(kefu.usage.CPUSeconds/float64(kefu.ok+kefu.errors))/(base.usage.CPUSeconds/float64(base.ok+base.errors)))
	if o.rounds > 1 {
		// Each round's two runs are adjacent in time, so their ratio is
		// the least disturbed by other load on the machine.
		var ratios []float64
		for i := 0; i+1 < len(records); i += 2 {
			b, k := summarize(records[i:i+1]), summarize(records[i+1:i+2])
			ratios = append(ratios, k.rps()/b.rps())
		}
		slices.Sort(ratios)
		fmt.Fprintf(out, "throughput ratio per round: min %.2f×, median %.2f×, max %.2f×\n",
			ratios[0], median(ratios), ratios[len(ratios)-1])
	}
	met := rpsRatio >= 1.0 && p99Ratio <= 1.0
	fmt.Fprintf(out, "target (throughput ≥ 1.0× and p99 no worse than the baseline): %s\n", verdict(met))
	if n := base.onTheFly + kefu.onTheFly; n > 0 {
		fmt.Fprintf(out, "note: %d requests were signed during the runs (pool too small; raise -pool-rps)\n", n)
	}

	fmt.Fprintln(out, "\nstream check (every request answered \"success\" is in its stream exactly once):")
	for _, r := range records {
		stream := baselineStream
		if r.endpoint == "kefu" {
			stream = events.StreamWeChat
		}
		fmt.Fprintf(out, "  round %d %-8s %-11s seq %d–%d: %s\n", r.round, r.endpoint, stream, r.first, r.last, r.check)
	}
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

func fmtDur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0fµs", float64(d)/1e3)
}
