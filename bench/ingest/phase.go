package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
)

// phaseHooks run in this process when the generator has signed its
// requests and starts sending (ready), and at the edges of its measured
// window (start, stop).
type phaseHooks struct {
	ready, start, stop func() error
}

// runLoadPhase starts the generator as a child process and waits for its result.
func runLoadPhase(ctx context.Context, cfg loadConfig, hooks phaseHooks) (loadResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return loadResult{}, fmt.Errorf("load phase: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, cfg.args()...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return loadResult{}, fmt.Errorf("load phase: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return loadResult{}, fmt.Errorf("load phase: start generator: %w", err)
	}
	res, readErr := readGenerator(bufio.NewReader(out), hooks)
	if readErr != nil {
		cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if readErr != nil {
		return loadResult{}, fmt.Errorf("load phase: %w", readErr)
	}
	if waitErr != nil {
		return loadResult{}, fmt.Errorf("load phase: generator: %w", waitErr)
	}
	return res, nil
}

func readGenerator(r *bufio.Reader, hooks phaseHooks) (loadResult, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return loadResult{}, errors.New("generator exited without a result")
			}
			return loadResult{}, err
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "ready":
			if hooks.ready != nil {
				if err := hooks.ready(); err != nil {
					return loadResult{}, err
				}
			}
		case line == "start":
			if hooks.start != nil {
				if err := hooks.start(); err != nil {
					return loadResult{}, err
				}
			}
		case line == "stop":
			if hooks.stop != nil {
				if err := hooks.stop(); err != nil {
					return loadResult{}, err
				}
			}
		case strings.HasPrefix(line, "result "):
			var res loadResult
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "result ")), &res); err != nil {
				return loadResult{}, fmt.Errorf("decode generator result: %w", err)
			}
			return res, nil
		default:
			return loadResult{}, fmt.Errorf("unexpected generator output %q", line)
		}
	}
}

// processUsage is this process's resource use during a measured window:
// the endpoint under test plus the embedded NATS server.
type processUsage struct {
	CPUSeconds   float64
	AllocBytes   uint64
	AllocObjects uint64
	GCCycles     uint64
	// HeapLive is the heap marked live by the last GC before the window
	// ended: what every GC cycle had to scan.
	HeapLive uint64
}

// withMachineCPU adds to hooks a measure of the CPU time the whole machine
// spent busy during the window, so load from other processes sharing the
// cores shows in the report instead of silently skewing it.
func withMachineCPU(h phaseHooks, into *float64) phaseHooks {
	var before float64
	return phaseHooks{
		ready: h.ready,
		start: func() error {
			if h.start != nil {
				if err := h.start(); err != nil {
					return err
				}
			}
			before = machineBusy()
			return nil
		},
		stop: func() error {
			*into = machineBusy() - before
			if h.stop != nil {
				return h.stop()
			}
			return nil
		},
	}
}

// machineBusy is the CPU time all cores spent outside idle and iowait since
// boot, in seconds (first line of /proc/stat, in 1/100 s ticks); 0 when
// unavailable.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0
	}
	var busy uint64
	for i, f := range fields[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0
		}
		busy += n
	}
	return float64(busy) / 100
}

var usageMetrics = []string{"/gc/heap/allocs:bytes", "/gc/heap/allocs:objects", "/gc/cycles/total:gc-cycles", "/gc/heap/live:bytes"}

func readUsage() processUsage {
	samples := make([]metrics.Sample, len(usageMetrics))
	for i, name := range usageMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	return processUsage{CPUSeconds: selfCPU(), AllocBytes: samples[0].Value.Uint64(),
		AllocObjects: samples[1].Value.Uint64(), GCCycles: samples[2].Value.Uint64(), HeapLive: samples[3].Value.Uint64()}
}

func (u processUsage) sub(v processUsage) processUsage {
	return processUsage{CPUSeconds: u.CPUSeconds - v.CPUSeconds, AllocBytes: u.AllocBytes - v.AllocBytes,
		AllocObjects: u.AllocObjects - v.AllocObjects, GCCycles: u.GCCycles - v.GCCycles, HeapLive: u.HeapLive}
}

// usageHooks measure this process over the window. A non-empty cpuProfile
// path gets a CPU profile of the window; a non-empty allocsProfile path gets
// the allocation profile at its end, and path+".start" the one at its start,
// so `go tool pprof -diff_base <path>.start <path>` shows what the window
// allocated.
func usageHooks(cpuProfile, allocsProfile string, into *processUsage) phaseHooks {
	var before processUsage
	var f *os.File
	return phaseHooks{
		start: func() error {
			if allocsProfile != "" {
				if err := writeAllocs(allocsProfile + ".start"); err != nil {
					return err
				}
			}
			if cpuProfile != "" {
				var err error
				if f, err = os.Create(cpuProfile); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					f.Close()
					return fmt.Errorf("cpu profile: %w", err)
				}
			}
			before = readUsage()
			return nil
		},
		stop: func() error {
			*into = readUsage().sub(before)
			if f != nil {
				pprof.StopCPUProfile()
				if err := f.Close(); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
			}
			if allocsProfile != "" {
				return writeAllocs(allocsProfile)
			}
			return nil
		},
	}
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("allocs profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("allocs profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("allocs profile: %w", err)
	}
	return nil
}
