// Command console measures the supervisor console (services/console):
//
//   - live: C concurrent live connections (server-sent events) while R
//     estimate events a second cross the bus, for D: the delay from the
//     publish to each connection's receipt (p50, p99, max), the share of
//     events every connection received, and the console process's CPU;
//     then the baseline the console replaces — the same C clients polling
//     the JSON state every second — measured the same way;
//   - browser: the queue view with N waiting customers in headless
//     chromium: from navigation start to the first render of the whole
//     state (the page's own mark), median and worst of a few loads.
//
// The console runs in a child process of this program (the same binary,
// -serve), so its CPU time is its own; NATS runs in this process.
//
//	go run ./bench/console                      # 200 connections, 200 events/s, 20 s; 10,000 waiting
//	go run ./bench/console -conns 50 -rate 100 -duration 5s -waiting 2000
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/console"
)

const token = "bench-console-admin-token"

func main() {
	serve := flag.String("serve", "", "internal: run the console against this NATS URL and print its address")
	conns := flag.Int("conns", 200, "concurrent live connections")
	rate := flag.Int("rate", 200, "events per second")
	duration := flag.Duration("duration", 20*time.Second, "length of each live run")
	customers := flag.Int("customers", 100, "waiting customers the estimates are about (the listed queue)")
	waiting := flag.Int("waiting", 10000, "waiting customers for the browser run (0: skip it)")
	loads := flag.Int("loads", 5, "page loads in the browser run")
	chromium := flag.String("chromium", "chromium", "the browser for the browser run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *serve != "" {
		err = serveConsole(ctx, *serve)
	} else {
		err = run(ctx, *conns, *rate, *duration, *customers, *waiting, *loads, *chromium)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/console:", err)
		os.Exit(1)
	}
}

// serveConsole is the child: the console alone, as `kefu console` runs it.
func serveConsole(ctx context.Context, natsURL string) error {
	b, err := bus.Open(ctx, bus.Config{URLs: []string{natsURL}, Name: "bench-console"})
	if err != nil {
		return err
	}
	defer b.Close()
	svc, err := console.New(console.Config{AdminToken: token, AppID: "wxbench", MaxStreams: 10000}, console.Deps{Bus: b})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	defer svc.Stop(context.Background())
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := listen()
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	go srv.Serve(ln)
	<-ctx.Done()
	return srv.Close()
}

func run(ctx context.Context, conns, rate int, duration time.Duration, customers, waiting, loads int, chromium string) error {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: must(os.MkdirTemp("", "bench-console-")), NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats not ready")
	}
	b, err := bus.Open(ctx, bus.Config{URLs: []string{ns.ClientURL()}, Name: "bench-publisher"})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.EnsureStreams(ctx, events.StreamKF, events.StreamWeChat, events.StreamTucao); err != nil {
		return err
	}

	child, addr, err := startChild(ctx, ns.ClientURL())
	if err != nil {
		return err
	}
	defer func() { child.Process.Signal(syscall.SIGTERM); child.Wait() }()
	base := "http://" + addr + console.Path
	cookie, err := signIn(base)
	if err != nil {
		return err
	}
	fmt.Printf("console: pid %d at %s; NATS in this process; %d cores, load average %s\n\n", child.Process.Pid, base, numCPU(), loadAverage())

	pub := &publisher{b: b, customers: customers}
	if err := pub.warm(ctx); err != nil {
		return err
	}
	if _, err := waitFor(base, cookie, customers); err != nil {
		return err
	}
	fmt.Printf("live: %d connections, %d estimate events/s about %d customers, %s each\n", conns, rate, customers, duration)
	sse, err := liveRun(ctx, base, cookie, conns, rate, duration, pub, child.Process.Pid, false)
	if err != nil {
		return err
	}
	poll, err := liveRun(ctx, base, cookie, conns, rate, duration, pub, child.Process.Pid, true)
	if err != nil {
		return err
	}
	fmt.Printf("%-26s %8s %9s %9s %9s %10s %12s %9s\n", "", "events/s", "p50", "p99", "max", "delivered", "console CPU", "frames/s")
	for _, r := range []result{sse, poll} {
		fmt.Printf("%-26s %8.0f %9s %9s %9s %9.1f%% %6.2f cores %9.0f\n", r.name, r.rate, ms(r.p50), ms(r.p99), ms(r.max), 100*r.delivered, r.cpu, r.framesPerSec)
	}
	fmt.Printf("ratio polling/stream: p99 delay %.1fx, CPU %.2fx\n\n", float64(poll.p99)/float64(sse.p99), poll.cpu/sse.cpu)

	if waiting > 0 {
		if err := browserRun(ctx, pub, base, waiting, loads, chromium); err != nil {
			return err
		}
	}
	return nil
}

func startChild(ctx context.Context, natsURL string) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, self, "-serve", natsURL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	buf := make([]byte, 64)
	n, err := out.Read(buf)
	if err != nil {
		return nil, "", fmt.Errorf("child: %w", err)
	}
	return cmd, strings.TrimSpace(string(buf[:n])), nil
}

func signIn(base string) (*http.Cookie, error) {
	resp, err := http.Post(base+"api/login", "application/json", strings.NewReader(`{"token":"`+token+`"}`))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			return c, nil
		}
	}
	return nil, fmt.Errorf("sign in: %s", resp.Status)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
