package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/demo"
	"github.com/kefu-io/kefu/internal/httpedge"
)

// runRole runs a role in four steps: prepare (flags, configuration,
// logger, listeners, bus), build (the modules, in the module table's
// order), serve (HTTP, readiness), and on a signal shut down (the modules
// in reverse order, within the grace period).
func runRole(ctx context.Context, r role, args []string, stdout, stderr io.Writer) error {
	cfg, opts, err := loadConfig(r.name, args, stdout)
	if err != nil {
		return err
	}
	if opts.tucaoBackfill {
		return runBackfill(ctx, cfg, opts, stdout, stderr)
	}
	p, err := prepareRole(ctx, r, cfg, stdout, stderr)
	if err != nil {
		return err
	}
	defer p.close()
	rt := p.rt
	grace := shutdownGrace(rt.cfg)
	started := &startedModules{log: rt.log}
	stopWithin := func(d time.Duration) {
		sctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		started.stop(sctx)
	}
	if err := rt.startModules(ctx, started); err != nil {
		stopWithin(grace)
		return err
	}
	servers, serveErr := p.serve()
	rt.log.Info("kefu started", zap.String("role", r.name), zap.String("version", version()),
		zap.String("http", rt.httpURL), zap.String("nats", rt.bus.ClientURL()))
	if rt.demo != nil {
		if err := rt.startDemo(ctx); err != nil {
			stopWithin(grace)
			return err
		}
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		for _, srv := range servers {
			srv.Close()
		}
		stopWithin(grace)
		return fmt.Errorf("http server: %w", err)
	}
	rt.shutdown(grace, servers, func(ctx context.Context) {
		if rt.demo != nil {
			rt.demo.Stop()
		}
		started.stop(ctx)
	})
	return nil
}

// preparedRole is a role ready to build its modules: its runtime, its
// listeners, and what to close when it ends.
type preparedRole struct {
	rt              *runtime
	listener        net.Listener
	metricsListener net.Listener // nil: /metrics on the main listener
	closers         []func()
}

// close closes what prepareRole opened, last opened first.
func (p *preparedRole) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// prepareRole checks a single role's settings before touching anything,
// then makes the logger, opens the listeners (so a busy port fails before
// anything starts) and the bus.
func prepareRole(ctx context.Context, r role, cfg config.Config, stdout, stderr io.Writer) (_ *preparedRole, err error) {
	p := &preparedRole{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	var demoEnv *demo.Env
	if r.name == "demo" {
		if demoEnv, err = demo.Prepare(&cfg); err != nil {
			return nil, err
		}
		p.closers = append(p.closers, demoEnv.Close)
	}
	if err := checkRoleSettings(r, cfg); err != nil {
		return nil, err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { log.Sync() })
	rt := &runtime{role: r, cfg: cfg, log: log, registry: prometheus.NewRegistry(), mux: http.NewServeMux(), stdout: stdout, demo: demoEnv}
	rt.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo().collector())
	p.rt = rt
	if err := p.listen(); err != nil {
		return nil, err
	}
	b, err := bus.Open(ctx, busConfig(cfg, "kefu-"+r.name, log, rt.registry))
	if err != nil {
		return nil, err
	}
	rt.bus = b
	p.closers = append(p.closers, func() { b.Close() })
	if b.Embedded() {
		log.Info("embedded NATS server started", zap.String("url", b.ClientURL()), zap.String("data_dir", cfg.DataDir))
	}
	return p, nil
}

// checkRoleSettings refuses a single (not lenient) role whose modules'
// settings are missing; an optional module with none set is skipped.
func checkRoleSettings(r role, cfg config.Config) error {
	if r.lenient {
		return nil
	}
	for _, m := range r.modules {
		if skipModule(cfg, m) {
			continue
		}
		if need, ok := moduleNeeds[m]; ok {
			if err := cfg.Check(r.name, need); err != nil {
				return err
			}
		}
	}
	return nil
}

// listen opens the HTTP listener and, with KEFU_METRICS_ADDR, the one of
// /metrics, which keeps it off the port the internet reaches.
func (p *preparedRole) listen() error {
	rt := p.rt
	listener, err := rt.listen("KEFU_HTTP_ADDR", rt.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	p.listener = listener
	p.closers = append(p.closers, func() { listener.Close() })
	if rt.cfg.MetricsAddr != "" {
		ml, err := rt.listen("KEFU_METRICS_ADDR", rt.cfg.MetricsAddr)
		if err != nil {
			return err
		}
		p.metricsListener = ml
		p.closers = append(p.closers, func() { ml.Close() })
	}
	rt.httpURL = "http://" + listener.Addr().String()
	if tcp, ok := listener.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		rt.httpURL = fmt.Sprintf("http://127.0.0.1:%d", tcp.Port)
	}
	return nil
}

// serve registers the probes and /metrics, and serves HTTP on the
// listeners; a server's failure comes on the channel.
func (p *preparedRole) serve() ([]*http.Server, <-chan error) {
	rt := p.rt
	rt.mux.HandleFunc("/healthz", rt.healthz)
	rt.mux.HandleFunc("/readyz", rt.readyz)
	metrics := promhttp.HandlerFor(rt.registry, promhttp.HandlerOpts{Registry: rt.registry})
	// Every listener gets the same limits (httpedge.NewServer); the main
	// one serves rt.mux behind the edge (tokens, rate limit).
	servers := []*http.Server{httpedge.NewServer(rt.edge())}
	if rt.console != nil {
		// Live console streams never end by themselves: end them when
		// the server shuts down rather than wait for them.
		servers[0].RegisterOnShutdown(rt.console.CloseStreams)
	}
	listeners := []net.Listener{p.listener}
	if p.metricsListener != nil {
		mm := http.NewServeMux()
		mm.Handle("/metrics", metrics)
		servers = append(servers, httpedge.NewServer(mm))
		listeners = append(listeners, p.metricsListener)
		rt.log.Info("metrics served on their own address", zap.String("addr", p.metricsListener.Addr().String()))
	} else {
		rt.mux.Handle("/metrics", metrics)
	}
	serveErr := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { serveErr <- srv.Serve(listeners[i]) }()
	}
	return servers, serveErr
}
