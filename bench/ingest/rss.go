package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// measureKefuAll builds cmd/kefu, runs `kefu all` (embedded NATS, file
// storage in a temporary KEFU_DATA_DIR) as its own process, loads it like the
// comparison does, and samples its VmRSS every 500 ms.
func measureKefuAll(ctx context.Context, o options, out io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "kefu-bench-all-")
	if err != nil {
		return fmt.Errorf("rss: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(out, "\n`kefu all` as its own process: building cmd/kefu …")
	bin := filepath.Join(dir, "kefu")
	if err := buildKefu(ctx, bin); err != nil {
		return err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	env := map[string]string{
		"KEFU_WECHAT_APPID":    benchAppID,
		"KEFU_WECHAT_TOKEN":    benchToken,
		"KEFU_DATA_DIR":        filepath.Join(dir, "data"),
		"KEFU_HTTP_ADDR":       httpAddr,
		"KEFU_NATS_LISTEN":     natsAddr,
		"KEFU_WECHAT_TRANSFER": "false",
		"KEFU_LOG_LEVEL":       "warn",
	}
	if o.mode != wechat.ModePlain {
		env["KEFU_WECHAT_AES_KEY"] = benchAESKey
	}
	for k, v := range o.kefuEnv {
		env[k] = v
	}
	logPath := filepath.Join(dir, "kefu.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("rss: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "all")
	cmd.Env = kefuEnv(os.Environ(), env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rss: start kefu all: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if stopErr := stopProcess(cmd, exited); stopErr != nil && err == nil {
			err = stopErr
		}
		if err != nil {
			if b, _ := os.ReadFile(logPath); len(b) > 0 {
				fmt.Fprintf(out, "kefu all log:\n%s\n", tail(b, 4000))
			}
		}
	}()
	base := "http://" + httpAddr
	if err := waitReady(ctx, base+"/readyz", exited); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	idle, err := readStatusKB(pid, "VmRSS")
	if err != nil {
		return err
	}

	var sampler *rssSampler
	var cpuBefore, cpuAfter float64
	rec := &phaseRecord{endpoint: "kefu all", round: 1, msgIDBase: msgIDBase(1000), first: 1}
	hooks := withMachineCPU(phaseHooks{
		// Sampling starts with the load (warm-up included), not while the
		// generator is still signing its requests.
		ready: func() error { sampler = startRSSSampler(pid, 500*time.Millisecond); return nil },
		start: func() (err error) { cpuBefore, err = procCPU(pid); return err },
		stop:  func() (err error) { cpuAfter, err = procCPU(pid); return err },
	}, &rec.machineCPU)
	cfg := o.load(base+"/wechat/callback", 1000)
	extra := ""
	for k, v := range o.kefuEnv {
		extra += " " + k + "=" + v
	}
	if extra != "" {
		extra = " with" + extra
	}
	fmt.Fprintf(out, "`kefu all`%s pid %d ready at %s (NATS %s), idle RSS %.1f MB; loading …\n", extra, pid, base, natsAddr, float64(idle)/1024)
	rec.load, err = runLoadPhase(ctx, cfg, hooks)
	if sampler == nil && err == nil {
		err = errors.New("generator reported no ready")
	}
	if sampler == nil {
		return fmt.Errorf("rss: %w", err)
	}
	maxRSS, samples := sampler.stop()
	if err != nil {
		return fmt.Errorf("rss: %w", err)
	}
	hwm, err := readStatusKB(pid, "VmHWM")
	if err != nil {
		return err
	}
	rec.usage.CPUSeconds = cpuAfter - cpuBefore

	if err := checkKefuAllStream(ctx, natsAddr, rec); err != nil {
		return err
	}
	s := summarize([]*phaseRecord{rec})
	fmt.Fprintln(out)
	printTableHeader(out, "kefu all")
	printRow(out, "1", "kefu all", s)
	fmt.Fprintf(out, "\nRSS of `kefu all`: idle %.1f MB, max under load %.1f MB (%d samples every 500 ms during warm-up and load), VmHWM %.1f MB\n",
		float64(idle)/1024, float64(maxRSS)/1024, samples, float64(hwm)/1024)
	fmt.Fprintf(out, "target (RSS under load < 150 MB): %s\n", verdict(max(maxRSS, hwm) < 150*1024))
	fmt.Fprintf(out, "stream check KEFU_WECHAT seq %d–%d: %s\n", rec.first, rec.last, rec.check)
	if rec.load.OnTheFly > 0 {
		fmt.Fprintf(out, "note: %d requests were signed during the run (pool of %d; raise -pool-rps)\n", rec.load.OnTheFly, rec.load.Pool)
	}
	return nil
}

// buildKefu compiles cmd/kefu from the module this benchmark belongs to.
func buildKefu(ctx context.Context, bin string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return errors.New("rss: run the benchmark from inside the kefu module (go env GOMOD is empty)")
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kefu")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("rss: go build ./cmd/kefu: %w\n%s", err, b)
	}
	return nil
}

// kefuEnv is the environment without any KEFU_ setting of the caller's,
// plus the benchmark's.
func kefuEnv(inherited []string, set map[string]string) []string {
	var env []string
	for _, kv := range inherited {
		if !strings.HasPrefix(kv, "KEFU_") {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitReady(ctx context.Context, url string, exited <-chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("rss: kefu all exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	return errors.New("rss: kefu all not ready within 60 s")
}

// stopProcess sends SIGTERM, as an orchestrator would, and waits for the
// graceful shutdown.
func stopProcess(cmd *exec.Cmd, exited <-chan error) error {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return nil // already gone; Wait reported it
	}
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("rss: kefu all exited with %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		return errors.New("rss: kefu all did not stop within 30 s of SIGTERM")
	}
}

type rssSampler struct {
	done    chan struct{}
	wg      sync.WaitGroup
	max     int64
	samples int
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			if kb, err := readStatusKB(pid, "VmRSS"); err == nil {
				s.max = max(s.max, kb)
				s.samples++
			}
		}
	}()
	return s
}

// stop returns the largest VmRSS seen, in kB, and the number of samples.
func (s *rssSampler) stop() (int64, int) {
	close(s.done)
	s.wg.Wait()
	return s.max, s.samples
}

// readStatusKB reads a "Name:   1234 kB" line of /proc/<pid>/status.
func readStatusKB(pid int, name string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read /proc/%d/status: %w", pid, err)
	}
	return parseStatusKB(b, name)
}

func parseStatusKB(status []byte, name string) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte(name+":"))
		if !ok {
			continue
		}
		fields := strings.Fields(string(rest))
		if len(fields) != 2 || fields[1] != "kB" {
			break
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc status", name)
}

// procCPU is the user+system CPU time of a process in seconds, from
// /proc/<pid>/stat (clock ticks of 1/100 s, Linux's USER_HZ).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	return parseStatCPU(b)
}

func parseStatCPU(stat []byte) (float64, error) {
	// The command name in parentheses may contain spaces; fields are
	// counted after its closing parenthesis: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return float64(utime+stime) / 100, nil
}

// checkKefuAllStream verifies, through the embedded server's client port,
// that every callback answered "success" is in KEFU_WECHAT.
func checkKefuAllStream(ctx context.Context, natsAddr string, rec *phaseRecord) error {
	nc, err := nats.Connect("nats://"+natsAddr, nats.Name("kefu-bench-check"))
	if err != nil {
		return fmt.Errorf("rss: connect to kefu's NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("rss: %w", err)
	}
	rec.check, rec.last, err = checkStream(ctx, js, events.StreamWeChat, rec.first, rec.load, rec.msgIDBase)
	return err
}

func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return b[len(b)-n:]
}
