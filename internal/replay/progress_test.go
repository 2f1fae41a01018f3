package replay_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/replay"
)

// steppingClock moves 100 ms each time it is read, so a replay of a few
// events spans several progress refreshes without sleeping.
func steppingClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(100 * time.Millisecond)
		return t
	}
}

func TestReplayProgress(t *testing.T) {
	b, _ := openBus(t)
	publishFixtures(t, b, wechatFixtures)
	n := len(wechatFixtures)
	tests := []struct {
		name                      string
		args                      []string
		stdoutTTY, stderrTTY      bool
		wantProgress, wantSummary bool
	}{
		{"to a file from a terminal: progress, then the summary", nil, false, true, true, true},
		{"to a file from a script: the summary alone", nil, false, false, false, true},
		{"on the terminal: the events are the progress", nil, true, true, false, false},
		{"republished from a terminal: progress", []string{"--republish", "copy"}, true, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			replay.SetTerminal(t, func(w io.Writer) bool {
				return (w == &stdout && tt.stdoutTTY) || (w == &stderr && tt.stderrTTY)
			}, steppingClock())
			args := append([]string{"--stream", "KEFU_WECHAT"}, tt.args...)
			if err := replay.Replay(context.Background(), args, &stdout, &stderr, b); err != nil {
				t.Fatal(err)
			}
			errText := stderr.String()
			if got := strings.Contains(errText, "\r"); got != tt.wantProgress {
				t.Fatalf("progress line drawn %v, want %v: %q", got, tt.wantProgress, errText)
			}
			if tt.wantProgress {
				first := "\rkefu replay KEFU_WECHAT: 0/8 events (0%)"
				if !strings.Contains(errText, first) {
					t.Errorf("stderr %q does not show %q", errText, first)
				}
				if strings.Count(errText, "events (") >= n {
					t.Errorf("redrawn for every event: %q", errText)
				}
				if !strings.Contains(errText, "\r\x1b[K") {
					t.Errorf("the progress line was not cleared: %q", errText)
				}
			}
			summary := "kefu replay KEFU_WECHAT: 8 events in "
			if got := strings.Contains(errText, summary); got != tt.wantSummary {
				t.Fatalf("summary %v, want %v: %q", got, tt.wantSummary, errText)
			}
			if tt.wantSummary && !strings.HasSuffix(errText, " events/s)\n") {
				t.Errorf("the summary is not the last line: %q", errText)
			}
			if tt.args == nil {
				if strings.ContainsAny(stdout.String(), "\r\x1b") || strings.Count(stdout.String(), "\n") != n {
					t.Errorf("stdout is not the %d events alone: %q", n, stdout.String())
				}
			}
		})
	}
}
