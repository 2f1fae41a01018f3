package replay_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/replay"
	"github.com/kefu-io/kefu/pkg/events"
)

// BenchmarkReplay replays a file-storage stream of 200,000 events (real
// session.created bodies with CloudEvents headers) into a file and reports
// events/s.
func BenchmarkReplay(b *testing.B) {
	const n = 200_000
	bs, srv := openBus(b)
	_, js := natstest.Connect(b, srv)
	ctx := context.Background()
	ev := sessionCreated("oXz9s5MxW1aEbzDfXqkz3bVt1ZkQ", "alice@gh_test")
	ev.ToUserName = "gh_0123456789ab"
	ev.Raw = map[string]any{"ToUserName": "gh_0123456789ab", "FromUserName": ev.OpenID, "CreateTime": "1764064800",
		"MsgType": "event", "Event": "kf_create_session", "KfAccount": ev.KfAccount}
	body, err := events.Encode(ev)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := "wx-evt-" + ev.OpenID + "-" + strconv.Itoa(i) + "-kf_create_session-" + ev.KfAccount
		msg := &nats.Msg{Subject: events.SubjectSessionCreated, Data: body, Header: ceHeader(events.SubjectSessionCreated, id)}
		for {
			_, err := js.PublishMsgAsync(msg)
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				<-js.PublishAsyncComplete()
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			break
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishing the events took over a minute")
	}
	path := filepath.Join(b.TempDir(), "replay.jsonl")

	b.ResetTimer()
	cpuStart := processCPU(b)
	start := time.Now()
	for range b.N {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := replay.Replay(ctx, []string{"--stream", events.StreamWeChat}, f, io.Discard, bs); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpuStart
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
	// The machine may be shared: CPU time per event (replay and the
	// embedded server together) shows the cost whatever else runs.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n*b.N), "cpu-ns/event")

	out, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	if lines := bytes.Count(out, []byte("\n")); lines != n {
		b.Fatalf("the file holds %d lines; want %d", lines, n)
	}
	b.ReportMetric(float64(len(out))/float64(n), "bytes/event")
}
