package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/cliui"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/demo"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpedge"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/services/console"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/ingest"
)

// module is one service inside a role.
type module interface {
	// Start begins background work; it must not block.
	Start(ctx context.Context) error
	// Stop ends it, finishing work in flight.
	Stop(ctx context.Context) error
}

// readyChecker is a module with a dependency of its own (a database).
type readyChecker interface {
	Ready(ctx context.Context) error
}

// warner is a module running in a mode an operator should know about (say,
// plaintext callbacks accepted during a migration); /readyz lists its
// warnings to a caller with a token.
type warner interface {
	Warnings() []string
}

// runtime is what modules are built from.
type runtime struct {
	role     role
	cfg      config.Config
	log      *zap.Logger
	bus      *bus.Bus
	registry *prometheus.Registry
	mux      *http.ServeMux
	stdout   io.Writer
	draining atomic.Bool
	// unhealthy is set while /healthz fails (logged once per episode).
	unhealthy atomic.Bool
	checks    []readyChecker
	warners   []warner
	// demo is set by `kefu demo`.
	demo *demo.Env
	// wechat is the shared API client, built on first use.
	wechat *wechat.Client
	// states is the customer read model, opened on first use.
	states *customers.Store
	// links are the feedback links, made on first use (feedbackLinks).
	links *feedbacklink.Links
	// httpURL is where this process serves HTTP.
	httpURL string
	// feedbackStore is the feedback module's store, which the console
	// queries when both run in one process.
	feedbackStore store.Store
	// console is set when the role serves the console.
	console *console.Service
}

// flagName turns KEFU_HTTP_ADDR into http-addr.
func flagName(envVar string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(envVar, "KEFU_")), "_", "-")
}

// roleOptions are flags of one role that are not configuration.
type roleOptions struct {
	tucaoBackfill bool
	from, to      string
}

// loadConfig reads the environment, then the flags that override it. -h
// prints the flags on stdout and returns flag.ErrHelp; a mistake comes
// back as one usageError, nothing printed.
func loadConfig(name string, args []string, stdout io.Writer) (config.Config, roleOptions, error) {
	var opts roleOptions
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return cfg, opts, err
	}
	fs := flag.NewFlagSet("kefu "+name, flag.ContinueOnError)
	if name == "ingest" {
		fs.BoolVar(&opts.tucaoBackfill, "tucao-backfill", false, "publish the Tucao posts created between --from and --to, then exit")
		fs.StringVar(&opts.from, "from", "", "first day of the backfill, YYYY-MM-DD, included; days are Tucao's, in "+ingest.BackfillZone)
		fs.StringVar(&opts.to, "to", "", "last day of the backfill, YYYY-MM-DD, included: --from D --to D is the day D ("+ingest.BackfillZone+")")
	}
	fs.SetOutput(io.Discard)
	fs.Usage = func() { roleUsage(fs.Output(), name, fs) }
	for _, v := range config.Vars {
		if !v.Flag() {
			continue
		}
		fs.Func(flagName(v.Name), v.Usage(), func(s string) error { return cfg.Set(v.Name, s) })
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return cfg, opts, err
		}
		return cfg, opts, usageError{name + ": " + err.Error()}
	}
	if fs.NArg() > 0 {
		return cfg, opts, usageError{fmt.Sprintf("%s: unexpected argument %q", name, fs.Arg(0))}
	}
	if opts.tucaoBackfill && (opts.from == "" || opts.to == "") {
		return cfg, opts, usageError{"--tucao-backfill needs --from YYYY-MM-DD and --to YYYY-MM-DD"}
	}
	if !opts.tucaoBackfill && (opts.from != "" || opts.to != "") {
		return cfg, opts, usageError{"--from and --to go with --tucao-backfill"}
	}
	if opts.tucaoBackfill {
		if _, err := ingest.ParseBackfillDays(opts.from, opts.to); err != nil {
			return cfg, opts, usageError{err.Error()}
		}
	}
	return cfg, opts, nil
}

// shutdownGrace is KEFU_SHUTDOWN_GRACE, 25 s when unset.
func shutdownGrace(cfg config.Config) time.Duration {
	if cfg.ShutdownGrace > 0 {
		return cfg.ShutdownGrace
	}
	return 25 * time.Second
}

// Shares of the grace period, from SIGTERM: readiness fails and HTTP is
// still served for unreadyShare (at most unreadyMax) — the time a load
// balancer or a Kubernetes Service needs to stop routing here, so requests
// it still sends are answered rather than refused —; requests in flight
// finish by httpShare, services drain their consumers and release their leases by
// stopShare, the bus drains by drainShare; the rest is for the embedded
// server to stop. A step that overruns its share is cut short so that the
// next still runs, and the whole never outlasts the grace: the
// orchestrator's own grace period (deploy/, a margin longer) never has to
// kill kefu mid-write.
const (
	unreadyShare = 0.1
	unreadyMax   = 5 * time.Second
	httpShare    = 0.35
	stopShare    = 0.75
	drainShare   = 0.9
)

// shutdown runs the shutdown sequence within grace: readiness fails first
// (load balancers stop sending), then the HTTP servers stop accepting and
// drain, then stop
// runs (modules), then the bus drains.
func (rt *runtime) shutdown(grace time.Duration, servers []*http.Server, stop func(context.Context)) {
	start := time.Now()
	at := func(share float64) time.Time { return start.Add(time.Duration(float64(grace) * share)) }
	rt.log.Info("shutting down", zap.Duration("grace", grace))
	rt.draining.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(min(time.Duration(float64(grace)*unreadyShare), unreadyMax))
		hctx, cancel := context.WithDeadline(context.Background(), at(httpShare))
		for _, srv := range servers {
			if err := srv.Shutdown(hctx); err != nil {
				rt.log.Warn("http requests still running at the end of their share of the shutdown grace; closing", zap.Error(err))
				srv.Close()
			}
		}
		cancel()
		sctx, cancel := context.WithDeadline(context.Background(), at(stopShare))
		stop(sctx)
		cancel()
		if err := rt.bus.DrainWithin(time.Until(at(drainShare))); err != nil {
			rt.log.Warn("nats drain", zap.Error(err))
		}
	}()
	select {
	case <-done:
		rt.log.Info("stopped", zap.Duration("took", time.Since(start)))
	case <-time.After(time.Until(at(1))):
		rt.log.Error("shutdown outlasted KEFU_SHUTDOWN_GRACE; exiting anyway", zap.Duration("grace", grace))
	}
}

// healthz is liveness: it fails only once the bus has been unusable for
// longer than KEFU_NATS_DOWN_LIMIT, so that the orchestrator restarts a
// process that cannot recover by itself (the bus reconnects and redials
// on its own; a shorter outage only fails /readyz).
// spoolCovers reports whether this process keeps taking its traffic while
// the NATS cluster is away: the ingest role with store and forward
// (KEFU_INGEST_STORE_FORWARD) answers callbacks from its local spool, so
// an outage of the cluster must neither take it out of the load balancer
// nor restart it. Its Tucao poller, if any, retries its polls afterwards.
// The spool's own readiness (the ingest module's Ready) still counts.
func (rt *runtime) spoolCovers() bool {
	return rt.role.name == "ingest" && rt.cfg.IngestStoreForward
}

// spoolCoversNow is spoolCovers while the spool itself is ready.
func (rt *runtime) spoolCoversNow() bool {
	if !rt.spoolCovers() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, c := range rt.checks {
		if c.Ready(ctx) != nil {
			return false
		}
	}
	return true
}

func (rt *runtime) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if since := rt.bus.UnusableSince(); !since.IsZero() && rt.cfg.NATSDownLimit > 0 && !rt.spoolCoversNow() {
		if down := time.Since(since); down > rt.cfg.NATSDownLimit && !rt.draining.Load() {
			if !rt.unhealthy.Swap(true) {
				rt.log.Error("NATS unusable for longer than KEFU_NATS_DOWN_LIMIT: /healthz fails so that the orchestrator restarts kefu",
					zap.Duration("down", down.Round(time.Second)), zap.Duration("limit", rt.cfg.NATSDownLimit))
			}
			// Probes need only the status; the log says why.
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "unhealthy\n")
			return
		}
	}
	rt.unhealthy.Store(false)
	io.WriteString(w, "ok\n")
}

// listen opens a listener on addr (the value of the variable name). `kefu
// demo` falls back to a free port when the configured one is busy; other
// roles fail clearly.
func (rt *runtime) listen(name, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err == nil {
		return l, nil
	}
	if rt.demo == nil {
		return nil, fmt.Errorf("%s %s: %w", name, addr, err)
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// readyzRetry is the Retry-After of a "not ready" /readyz.
const readyzRetry = 5 * time.Second

// readyz answers "ready" or "not ready" (503). The reason — an error from
// NATS or a database, which may name hosts and users — and the modules'
// warnings are shown only to a caller with the admin or the read-only token;
// probes need only the status code.
func (rt *runtime) readyz(w http.ResponseWriter, r *http.Request) {
	detail := rt.apiTokens().Authorize(r) != httpedge.NoAccess
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	notReady := func(reason string) {
		// Probes poll on their own period; Retry-After is for the other
		// callers: NATS reconnects and a draining replica is replaced
		// within seconds.
		httpapi.SetRetryAfter(w, readyzRetry)
		w.WriteHeader(http.StatusServiceUnavailable)
		if !detail {
			io.WriteString(w, "not ready\n")
			return
		}
		io.WriteString(w, "not ready: "+strings.ReplaceAll(reason, "\n", "; ")+"\n")
		rt.writeWarnings(w)
	}
	if rt.draining.Load() {
		notReady("draining")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := rt.bus.Ready(ctx); err != nil && !rt.spoolCovers() {
		notReady("nats: " + err.Error())
		return
	}
	for _, c := range rt.checks {
		if err := c.Ready(ctx); err != nil {
			notReady(err.Error())
			return
		}
	}
	io.WriteString(w, "ready\n")
	if detail {
		rt.writeWarnings(w)
	}
}

func (rt *runtime) writeWarnings(w io.Writer) {
	for _, m := range rt.warners {
		for _, msg := range m.Warnings() {
			io.WriteString(w, "warning: "+strings.ReplaceAll(msg, "\n", "; ")+"\n")
		}
	}
}

// runBackfill is `kefu ingest --tucao-backfill`: publish a window of Tucao
// history within the product's rate limit, then exit.
func runBackfill(ctx context.Context, cfg config.Config, opts roleOptions, stdout, stderr io.Writer) error {
	if err := cfg.Check("ingest --tucao-backfill", config.NeedTucao); err != nil {
		return err
	}
	days, err := ingest.ParseBackfillDays(opts.from, opts.to)
	if err != nil {
		return usageError{err.Error()}
	}
	// On a terminal, one line says how far the backfill is; log lines
	// take it off the screen before they are written.
	progress := cliui.NewProgress(stderr, "backfill "+days.String(), "days")
	progress.SetTotal(int64(days.Count()))
	defer progress.Finish()
	log, err := buildLogger(cfg, progress.Writer(stderr), cliui.Detect(stderr, os.Getenv))
	if err != nil {
		return err
	}
	// A backfill is a command-line tool: it publishes to the running
	// kefu's NATS and never starts a server of its own.
	b, err := openToolBus(ctx, cfg, "kefu-backfill", os.Getenv, log)
	if err != nil {
		return err
	}
	defer b.Drain()
	// Warned once the backfill really starts: a failure stays one line.
	for _, f := range []struct {
		flag, value string
		day         time.Time
	}{{"--from", opts.from, days.First}, {"--to", opts.to, days.Last}} {
		if ingest.IsDeprecatedDay(f.value) {
			log.Warn("YYYYMMDD days are deprecated: write YYYY-MM-DD", zap.String("flag", f.flag), zap.String("value", f.value), zap.String("write", f.day.Format(ingest.DayLayout)))
		}
	}
	rt := &runtime{role: role{name: "ingest"}, cfg: cfg, log: log, bus: b, registry: prometheus.NewRegistry()}
	p, err := newTucaoPoller(ctx, rt)
	if err != nil {
		return err
	}
	defer p.Stop(context.Background())
	res, err := p.BackfillWithProgress(ctx, opts.from, opts.to, func(bp ingest.BackfillProgress) {
		progress.Update(int64(bp.DaysDone), fmt.Sprintf("%d posts", bp.Result.Seen))
	})
	if err == nil {
		progress.Update(int64(days.Count()), fmt.Sprintf("%d posts", res.Seen))
	}
	progress.Finish()
	fmt.Fprintf(stdout, "backfill %s (both days included, %s): %d posts read, %d published as created, %d as updated, in %s\n",
		days, ingest.BackfillZone, res.Seen, res.Created, res.Updated, progress.Elapsed().Round(time.Millisecond))
	return err
}

// apiTokens are the bearer tokens of every /api/ path.
func (rt *runtime) apiTokens() httpedge.Tokens {
	return httpedge.NewTokens(rt.cfg.AdminToken.Value(), rt.cfg.APIToken.Value())
}
