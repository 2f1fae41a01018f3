package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// baselineStream is the baseline's stream: kefu's WeChat stream
// configuration under another name and subject tree.
const baselineStream = "BASELINE"

// target is one endpoint under test and the stream it writes to.
type target struct {
	name   string
	url    string
	js     jetstream.JetStream
	stream string
	// createStream creates the stream. Every run gets a new stream, deleted
	// once checked, so no run inherits another's messages or
	// de-duplication window: JetStream keeps every Nats-Msg-Id of the last
	// 2 minutes in memory (about 110 B each), which a later run would
	// otherwise pay for in GC.
	createStream func(context.Context) error
}

// freshStream deletes the target's stream, if any, and creates it again.
func (t target) freshStream(ctx context.Context) error {
	if err := t.js.DeleteStream(ctx, t.stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete stream %s: %w", t.stream, err)
	}
	return t.createStream(ctx)
}

// inProcess is the comparison setup: one embedded JetStream server (file
// storage in a temporary directory) and both endpoints in this process, each
// with its own NATS connection, HTTP server and stream.
type inProcess struct {
	dir      string
	srv      *server.Server
	bus      *bus.Bus
	baseNC   *nats.Conn
	servers  []*http.Server
	baseline target
	kefu     target
}

// startInProcess starts both endpoints; guard gives the baseline the same
// plain-mode replay guard as kefu's.
func startInProcess(ctx context.Context, mode wechat.Mode, guard bool) (_ *inProcess, err error) {
	p := &inProcess{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.dir, err = os.MkdirTemp("", "kefu-bench-ingest-"); err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	p.srv, err = server.NewServer(&server.Options{
		ServerName: "kefu-bench", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: p.dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go p.srv.Start()
	if !p.srv.ReadyForConnections(15 * time.Second) {
		return nil, errors.New("nats server did not start")
	}
	aesKey := ""
	if mode != wechat.ModePlain {
		aesKey = benchAESKey
	}

	// kefu: wired as internal/app buildIngest wires it.
	registry := prometheus.NewRegistry()
	log := warnLogger()
	p.bus, err = bus.Open(ctx, bus.Config{URLs: []string{p.srv.ClientURL()}, Name: "kefu-ingest",
		DuplicateWindow: 2*ingest.DefaultWindow + time.Minute, Logger: log, Registerer: registry})
	if err != nil {
		return nil, fmt.Errorf("kefu bus: %w", err)
	}
	svc, err := ingest.New(ingest.Config{AppID: benchAppID, Token: benchToken, AESKey: aesKey, Transfer: false},
		ingest.Deps{Publisher: p.bus, Logger: log.Named("ingest"), Registerer: registry})
	if err != nil {
		return nil, fmt.Errorf("kefu ingest: %w", err)
	}
	kefuMux := http.NewServeMux()
	svc.Routes(kefuMux)
	kefuURL, err := p.serve(kefuMux)
	if err != nil {
		return nil, err
	}
	// Baseline: its own connection and a stream configured like kefu's.
	if p.baseNC, err = nats.Connect(p.srv.ClientURL(), nats.Name("baseline")); err != nil {
		return nil, fmt.Errorf("baseline nats: %w", err)
	}
	baseJS, err := jetstream.New(p.baseNC)
	if err != nil {
		return nil, fmt.Errorf("baseline jetstream: %w", err)
	}
	// kefu's stream is counted, checked and reset through this connection
	// too: the bus lends out none of its own.
	p.kefu = target{name: "kefu", url: kefuURL + "/wechat/callback", js: baseJS, stream: events.StreamWeChat,
		createStream: func(ctx context.Context) error { return p.bus.EnsureStreams(ctx, events.StreamWeChat) }}
	scfg, err := p.bus.StreamConfig(events.StreamWeChat)
	if err != nil {
		return nil, err
	}
	scfg.Name, scfg.Subjects, scfg.Description = baselineStream, []string{"baseline.>"}, "kefu ingest benchmark baseline"
	var sigs jetstream.KeyValue
	if guard && mode == wechat.ModePlain {
		// The same bucket settings as kefu's kefu_callback_sigs: file
		// storage, keys living as long as the de-duplication window.
		if sigs, err = baseJS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: "baseline_sigs", TTL: p.bus.DuplicateWindow(), Storage: jetstream.FileStorage, History: 1,
		}); err != nil {
			return nil, fmt.Errorf("baseline signature bucket: %w", err)
		}
	}
	bl, err := newBaseline(baseJS, benchToken, benchAppID, aesKey, sigs)
	if err != nil {
		return nil, err
	}
	baseMux := http.NewServeMux()
	baseMux.Handle("/wechat/callback", bl)
	baseURL, err := p.serve(baseMux)
	if err != nil {
		return nil, err
	}
	p.baseline = target{name: "baseline", url: baseURL + "/wechat/callback", js: baseJS, stream: baselineStream,
		createStream: func(ctx context.Context) error {
			if _, err := baseJS.CreateStream(ctx, scfg); err != nil {
				return fmt.Errorf("create stream %s: %w", baselineStream, err)
			}
			return nil
		}}
	return p, nil
}

// serve starts an HTTP server configured as kefu's.
func (p *inProcess) serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	p.servers = append(p.servers, srv)
	go srv.Serve(l)
	return "http://" + l.Addr().String(), nil
}

func (p *inProcess) Close() {
	for _, s := range p.servers {
		s.Close()
	}
	if p.baseNC != nil {
		p.baseNC.Close()
	}
	if p.bus != nil {
		p.bus.Close()
	}
	if p.srv != nil {
		p.srv.Shutdown()
		p.srv.WaitForShutdown()
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// warnLogger is kefu's JSON logger at KEFU_LOG_LEVEL=warn.
func warnLogger() *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(encCfg), zapcore.AddSync(os.Stderr), zapcore.WarnLevel))
}

// streamState is the stream's last sequence and size.
func streamState(ctx context.Context, js jetstream.JetStream, stream string) (jetstream.StreamState, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("stream %s info: %w", stream, err)
	}
	return info.State, nil
}

// streamCheck compares what a phase stored with what it was told.
type streamCheck struct {
	Stored     uint64 // messages the phase added to the stream
	Bytes      uint64 // bytes the stream holds (a fresh stream: what the phase added)
	Successes  int64  // requests answered "success"
	Missing    int64  // answered "success" but not in the stream
	Duplicates int64  // a MsgId stored twice
	Foreign    int64  // a message whose Nats-Msg-Id is not one of the phase's
	// StoredFailed were stored though the client saw an error (a timeout
	// after the ack, say): harmless, WeChat's retry is de-duplicated.
	StoredFailed int64
}

func (c streamCheck) OK() bool {
	return c.Missing == 0 && c.Duplicates == 0 && c.Foreign == 0 && int64(c.Stored) == c.Successes+c.StoredFailed
}

func (c streamCheck) String() string {
	verdict := "OK"
	if !c.OK() {
		verdict = "FAILED"
	}
	s := fmt.Sprintf("%d answered success, %d stored (%d B/msg), %d missing, %d duplicated, %d foreign",
		c.Successes, c.Stored, c.Bytes/max(c.Stored, 1), c.Missing, c.Duplicates, c.Foreign)
	if c.StoredFailed > 0 {
		s += fmt.Sprintf(", %d stored although the client saw an error", c.StoredFailed)
	}
	return s + ": " + verdict
}

// checkStream reads the headers of the messages from sequence first to the
// stream's last and checks that every MsgId the phase saw answered
// "success" is there exactly once. It returns the last sequence too.
func checkStream(ctx context.Context, js jetstream.JetStream, stream string, first uint64, res loadResult, msgIDBase int64) (streamCheck, uint64, error) {
	state, err := streamState(ctx, js, stream)
	if err != nil {
		return streamCheck{}, 0, err
	}
	last := state.LastSeq
	c := streamCheck{Successes: res.Successes, Bytes: state.Bytes}
	if last >= first {
		c.Stored = last - first + 1
	}
	seen := make([]uint8, res.Sent)
	if c.Stored > 0 {
		cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first, HeadersOnly: true})
		if err != nil {
			return c, last, fmt.Errorf("check %s: consumer: %w", stream, err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(4096))
		if err != nil {
			return c, last, fmt.Errorf("check %s: %w", stream, err)
		}
		defer it.Stop()
		for {
			m, err := it.Next()
			if err != nil {
				return c, last, fmt.Errorf("check %s: read: %w", stream, err)
			}
			meta, err := m.Metadata()
			if err != nil {
				return c, last, fmt.Errorf("check %s: metadata: %w", stream, err)
			}
			if meta.Sequence.Stream > last {
				break
			}
			i, ok := phaseIndex(m.Headers().Get(jetstream.MsgIDHeader), msgIDBase, res.Sent)
			switch {
			case !ok:
				c.Foreign++
			case seen[i] > 0:
				c.Duplicates++
			default:
				seen[i] = 1
			}
			if meta.Sequence.Stream == last {
				break
			}
		}
	}
	failed := make(map[int64]bool, len(res.FailedIDs))
	for _, id := range res.FailedIDs {
		failed[id] = true
	}
	for i, s := range seen {
		id := msgIDBase + int64(i)
		switch {
		case s == 0 && !failed[id]:
			c.Missing++
		case s == 1 && failed[id]:
			c.StoredFailed++
		}
	}
	return c, last, nil
}

// phaseIndex turns "wx-msg-<MsgId>" into the request's index in its phase.
func phaseIndex(natsMsgID string, msgIDBase, sent int64) (int64, bool) {
	id, err := strconv.ParseInt(strings.TrimPrefix(natsMsgID, "wx-msg-"), 10, 64)
	if err != nil || !strings.HasPrefix(natsMsgID, "wx-msg-") || id < msgIDBase || id >= msgIDBase+sent {
		return 0, false
	}
	return id - msgIDBase, true
}
