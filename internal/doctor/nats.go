package doctor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
)

// NATS is a connection the doctor opened to kefu's NATS.
type NATS struct {
	JS    JetStream
	Close func()
}

// JetStream is what the doctor reads of kefu's NATS; it never creates or
// changes a stream or bucket. A jetstream.JetStream is one.
type JetStream interface {
	AccountInfo(ctx context.Context) (*jetstream.AccountInfo, error)
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error)
}

// NATSTarget says which NATS the doctor dials and which setting chose it
// (the command-line tools' resolution: KEFU_NATS_URL, NATS_URL, the nats
// context, KEFU_NATS_LISTEN), and opens it. Open never starts a server nor
// creates a data directory.
type NATSTarget struct {
	URLs   string // redacted
	Source string
	Open   func(ctx context.Context) (*NATS, error)
}

// Buckets are the KV buckets kefu's roles create whatever the settings:
// every bucket of the bus but the optional ones (bus.OptionalBuckets).
var Buckets = slices.DeleteFunc(slices.Clone(bus.Buckets), func(name string) bool {
	return slices.Contains(bus.OptionalBuckets, name)
})

// Streams are kefu's event streams.
func Streams() []string {
	var out []string
	for name := range events.StreamSubjects {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// natsState is shared by the NATS checks: the first opens the connection,
// the others use it. A check that outlived its time stores nothing: the
// runner has moved on.
type natsState struct {
	target NATSTarget
	mu     sync.Mutex
	conn   *NATS
	js     bool // JetStream answered
}

// get returns the connection and whether JetStream answered.
func (s *natsState) get() (*NATS, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.js
}

// NATSChecks are the checks of NATS, JetStream, and kefu's streams and
// buckets, with the local clock against the server's when a stream tells
// it; close ends the connection they share.
func NATSChecks(t NATSTarget) (checks []Check, close func()) {
	s := &natsState{target: t}
	close = func() {
		if conn, _ := s.get(); conn != nil && conn.Close != nil {
			conn.Close()
		}
	}
	return []Check{
		{Name: "NATS", Run: s.reach},
		{Name: "JetStream", Run: s.jetStream},
		{Name: "streams and buckets", Run: s.streams},
	}, close
}

func (s *natsState) reach(ctx context.Context) []Result {
	if s.target.Open == nil {
		return []Result{{Status: Skip, Found: "no NATS to test: " + s.target.Source}}
	}
	conn, err := s.target.Open(ctx)
	if err == nil {
		s.mu.Lock()
		if ctx.Err() == nil {
			s.conn = conn
		} else if conn.Close != nil {
			conn.Close()
		}
		s.mu.Unlock()
	}
	if err != nil {
		// The tools' error ends with the same advice as the fix.
		found, _, _ := strings.Cut(err.Error(), "; set KEFU_NATS_URL")
		return []Result{{Status: Fail, Found: found,
			Fix: "set KEFU_NATS_URL to kefu's NATS (and KEFU_NATS_CREDS or KEFU_NATS_USER/KEFU_NATS_PASSWORD), or start it"}}
	}
	return []Result{{Status: OK, Found: fmt.Sprintf("%s (chosen by %s)", s.target.URLs, s.target.Source)}}
}

func (s *natsState) jetStream(ctx context.Context) []Result {
	conn, _ := s.get()
	if conn == nil {
		return []Result{{Status: Skip, Found: "NATS does not answer"}}
	}
	info, err := conn.JS.AccountInfo(ctx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return []Result{{Status: Fail, Found: "JetStream is not enabled for kefu's NATS account",
			Fix: "give the account kefu connects as JetStream (`jetstream: enabled` in its account block of the server's configuration)"}}
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return []Result{{Status: Fail, Found: "the NATS server runs without JetStream",
			Fix: "enable JetStream on the NATS server (`nats-server -js`, or `jetstream {}` in its configuration)"}}
	case err != nil:
		return []Result{{Status: Fail, Found: "JetStream does not answer: " + err.Error(),
			Fix: "check the NATS server's JetStream (a cluster needs a meta leader: most of its nodes up)"}}
	}
	s.mu.Lock()
	s.js = ctx.Err() == nil
	s.mu.Unlock()
	return []Result{{Status: OK, Found: fmt.Sprintf("enabled; %d streams, %s stored", info.Streams, bytesText(info.Store))}}
}

func (s *natsState) streams(ctx context.Context) []Result {
	conn, js := s.get()
	if !js {
		return []Result{{Status: Skip, Found: "JetStream does not answer"}}
	}
	var missing []string
	var clock []Result
	for _, name := range Streams() {
		sent := time.Now()
		st, err := conn.JS.Stream(ctx, name)
		received := time.Now()
		if err != nil {
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				return []Result{{Status: Fail, Found: "stream " + name + ": " + err.Error(), Fix: "check kefu's NATS permissions on $JS.API.>"}}
			}
			missing = append(missing, name)
			continue
		}
		// The server stamps the stream's info with its own clock: the
		// local clock is compared with it, at the middle of the request.
		if ts := st.CachedInfo().TimeStamp; clock == nil && !ts.IsZero() {
			skew := sent.Add(received.Sub(sent) / 2).Sub(ts)
			clock = []Result{withName(skewResult("local clock is", skew, clockWarn, 0, "the NATS server"), "clock vs NATS")}
		}
	}
	for _, name := range Buckets {
		if _, err := conn.JS.KeyValue(ctx, name); err != nil {
			if !errors.Is(err, jetstream.ErrBucketNotFound) {
				return []Result{{Status: Fail, Found: "bucket " + name + ": " + err.Error(), Fix: "check kefu's NATS permissions on $JS.API.>"}}
			}
			missing = append(missing, name)
		}
	}
	total := len(Streams()) + len(Buckets)
	if len(missing) > 0 {
		return append([]Result{{Status: Warn, Found: fmt.Sprintf("%d of %d missing: %s", len(missing), total, strings.Join(missing, ", ")),
			Fix: "start any kefu role once, it creates them"}}, clock...)
	}
	return append([]Result{{Status: OK, Found: fmt.Sprintf("all %d streams and %d buckets present", len(Streams()), len(Buckets))}}, clock...)
}

// clockWarn is how far the local clock may be from a server's before the
// doctor warns: event times, the callbacks' freshness window and Tucao's
// signatures all read it.
const clockWarn = 30 * time.Second

// skewResult judges a local clock that is off by skew (local minus
// reference): warn above warnAt, fail above failAt (0: never).
func skewResult(what string, skew, warnAt, failAt time.Duration, ref string) Result {
	abs := skew.Abs()
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	found := fmt.Sprintf("%s %s %s %s", what, abs.Round(100*time.Millisecond), dir, ref)
	switch {
	case failAt > 0 && abs > failAt:
		return Result{Status: Fail, Found: found + fmt.Sprintf(", more than the %s %s accepts", failAt, ref),
			Fix: "synchronise the host's clock (NTP: timedatectl set-ntp true, or chrony)"}
	case abs > warnAt:
		return Result{Status: Warn, Found: found, Fix: "synchronise the host's clock (NTP: timedatectl set-ntp true, or chrony)"}
	}
	return Result{Status: OK, Found: found}
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
