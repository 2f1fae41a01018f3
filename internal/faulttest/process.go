package faulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildKefu builds cmd/kefu into dir and returns the binary's path. It
// names the package by import path, so it works from any directory of
// the module.
func BuildKefu(ctx context.Context, dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build kefu: %w", err)
	}
	bin := filepath.Join(dir, "kefu")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/kefu-io/kefu/cmd/kefu")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build kefu: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return bin, nil
}

// HasRole reports whether `kefu help` lists the role.
func HasRole(ctx context.Context, bin, role string) (bool, error) {
	out, err := exec.CommandContext(ctx, bin, "help").Output()
	if err != nil {
		return false, fmt.Errorf("kefu help: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == role && strings.HasPrefix(line, "  ") {
			return true, nil
		}
	}
	return false, nil
}

// process is one kefu role as an OS process. Restarts keep its
// environment, HTTP address and data directory.
type process struct {
	role    string
	bin     string
	env     []string
	addr    string // KEFU_HTTP_ADDR
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result
	runs int
}

func (p *process) start() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.role, err)
	}
	p.mu.Lock()
	p.runs++
	fmt.Fprintf(logf, "=== run %d of kefu %s at %s\n", p.runs, p.role, time.Now().Format(time.RFC3339Nano))
	p.mu.Unlock()
	cmd := exec.Command(p.bin, p.role)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.role, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.err = cmd, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// waitReady polls GET /readyz until it answers 200; a process that exits
// meanwhile is an error carrying the end of its log.
func (p *process) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("kefu %s exited before it was ready (%v): %s", p.role, p.exitErr(), p.logTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("kefu %s not ready after %s: %s", p.role, timeout, p.logTail(2000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// kill is kill -9: the process gets no chance to finish anything.
func (p *process) kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.role, err)
	}
	<-done
	return nil
}

// term sends SIGTERM and waits for a clean exit, killing the process if it
// takes longer than grace.
func (p *process) term(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("terminate %s: %w", p.role, err)
	}
	select {
	case <-done:
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("kefu %s did not stop within %s of SIGTERM; killed", p.role, grace)
	}
	if err := p.exitErr(); err != nil {
		return fmt.Errorf("kefu %s exited with %v after SIGTERM: %s", p.role, err, p.logTail(2000))
	}
	return nil
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// roleEnv is the environment of every role: ours, plus the caller's
// without any KEFU_ variable, so an operator's shell cannot switch on an
// integration (Tucao, say) the scenario does not expect.
func roleEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEFU_") {
			env = append(env, kv)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

// pid is the running process's id (0 when not started).
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// running reports whether the process has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}
