package deadletter

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/pkg/events"
)

// deadLetters stores n dead letters of role feedback, each of a Tucao post.
func deadLetters(t *testing.T, n int) *bus.Bus {
	t.Helper()
	b, _ := bustest.Open(t, bustest.Streams(events.StreamDLQ, events.StreamTucao))
	for i := range n {
		msg := &nats.Msg{Subject: events.DLQSubject("feedback"), Data: []byte(`{"post_id":"1"}`), Header: nats.Header{}}
		msg.Header.Set(bus.HeaderDLQSubject, "kefu.tucao.post.created")
		msg.Header.Set(bus.HeaderDLQConsumer, "feedback")
		msg.Header.Set(bus.HeaderDLQMsgID, "tucao-post-"+string(rune('a'+i)))
		if _, err := b.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestRedriveProgress(t *testing.T) {
	tests := []struct {
		name     string
		terminal bool
	}{
		{"on a terminal: one updating line, cleared before each letter's line", true},
		{"in a pipe: the letters' lines and the summary alone", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := deadLetters(t, 5)
			var mu sync.Mutex
			clock := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
			isTerminal, now = func(io.Writer) bool { return tt.terminal }, func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				clock = clock.Add(time.Second) // every reading is a refresh
				return clock
			}
			t.Cleanup(func() { isTerminal, now = defaultIsTerminal, time.Now })

			var screen bytes.Buffer // stdout and stderr on one terminal
			err := Run(context.Background(), Options{Cmd: "redrive", Role: "feedback"}, b, &screen, &screen)
			if err != nil {
				t.Fatal(err)
			}
			out := screen.String()
			if !strings.HasSuffix(out, "role feedback: 5 redriven, 0 already redriven, 0 failed\n") {
				t.Fatalf("the summary is not the last line: %q", out)
			}
			if !tt.terminal {
				if strings.ContainsAny(out, "\r\x1b") || strings.Count(out, "\n") != 6 {
					t.Fatalf("want the 5 letters' lines and the summary, nothing else: %q", out)
				}
				return
			}
			if !strings.Contains(out, "\rkefu dlq redrive feedback: 0/5 messages (0%)") || !strings.Contains(out, "\rkefu dlq redrive feedback: 5/5 messages (100%)") {
				t.Fatalf("no progress from 0/5 to 5/5: %q", out)
			}
			// Every line printed starts on a clean line: the progress
			// line was taken off first.
			for _, line := range strings.SplitAfter(out, "\n") {
				if line == "" {
					continue
				}
				if i := strings.LastIndex(line, "\r"); i >= 0 && !strings.HasPrefix(line[i:], "\r\x1b[K") {
					t.Fatalf("a line printed over the progress line: %q", line)
				}
			}
		})
	}
}

var defaultIsTerminal = isTerminal
