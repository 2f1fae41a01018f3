package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
)

// publisher publishes estimate events; an event's wait_seconds is its
// sequence number, so a client knows which event it got and when it was
// sent.
type publisher struct {
	b         *bus.Bus
	customers int
	seq       atomic.Int64
	mu        sync.Mutex
	sentAt    map[int64]time.Time
}

func (p *publisher) publish(ctx context.Context, openid string, position int) (int64, error) {
	seq := p.seq.Add(1)
	now := time.Now()
	p.mu.Lock()
	if p.sentAt == nil {
		p.sentAt = map[int64]time.Time{}
	}
	p.sentAt[seq] = now
	p.mu.Unlock()
	ev := events.WaitEstimated{Meta: events.Meta{AppID: "wxbench", OccurredAt: now, ReceivedAt: now}, OpenID: openid, Position: position,
		WaitSeconds: seq, WaitP90Seconds: seq * 2, Model: "bench"}
	_, err := p.b.Publish(ctx, ev, bus.Envelope{ID: "bench-" + strconv.FormatInt(seq, 10), Source: "bench"})
	return seq, err
}

func (p *publisher) sent(seq int64) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.sentAt[seq]
	return t, ok
}

// warm puts the customers in the queue.
func (p *publisher) warm(ctx context.Context) error {
	for i := range p.customers {
		if _, err := p.publish(ctx, fmt.Sprintf("c-%05d", i), i+1); err != nil {
			return err
		}
	}
	return nil
}

type result struct {
	name           string
	p50, p99, max  time.Duration
	delivered, cpu float64
	framesPerSec   float64
	rate           float64 // events published a second, as achieved
}

// liveRun runs conns clients (live streams, or pollers of the JSON state
// every second) while rate events a second are published for duration.
func liveRun(ctx context.Context, base string, cookie *http.Cookie, conns, rate int, duration time.Duration, pub *publisher, pid int, polling bool) (result, error) {
	name := fmt.Sprintf("live stream (SSE) x%d", conns)
	if polling {
		name = fmt.Sprintf("polling JSON 1/s x%d", conns)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := pub.seq.Load() + 1
	clients := make([]*client, conns)
	var wg sync.WaitGroup
	ready := make(chan struct{}, conns)
	for i := range clients {
		c := &client{pub: pub, first: first, seen: map[int64]bool{}, last: map[string]int64{}}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			if polling {
				// Staggered over the second, as independent pages would be.
				time.Sleep(time.Duration(i) * time.Second / time.Duration(conns))
				ready <- struct{}{}
				c.poll(cctx, base, cookie)
			} else {
				c.stream(cctx, base, cookie, ready)
			}
		}()
	}
	for range conns {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			return result{}, fmt.Errorf("%s: clients not connected", name)
		}
	}
	time.Sleep(500 * time.Millisecond)
	cpu0 := cpuSeconds(pid)
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	n := 0
	// Each publish in its own goroutine: a slow acknowledgement must not
	// lower the rate.
	var pubs sync.WaitGroup
	var pubErr atomic.Value
	total := int(duration.Seconds() * float64(rate))
	for n < total {
		<-tick.C
		// Catch up on ticks the ticker dropped under load: the events due
		// by now, so that the rate is the one asked for.
		if due := int(time.Since(start).Seconds() * float64(rate)); n+1 < due && n < total-1 {
			tick.Reset(time.Microsecond)
		} else {
			tick.Reset(time.Second / time.Duration(rate))
		}
		i := n % pub.customers
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			if _, err := pub.publish(ctx, fmt.Sprintf("c-%05d", i), i+1); err != nil {
				pubErr.Store(err)
			}
		}()
		n++
	}
	tick.Stop()
	pubs.Wait()
	if err, ok := pubErr.Load().(error); ok {
		return result{}, err
	}
	elapsed := time.Since(start)
	last := pub.seq.Load()
	time.Sleep(1500 * time.Millisecond) // the last poll, the last frames
	cpu := (cpuSeconds(pid) - cpu0) / time.Since(start).Seconds()
	cancel()
	wg.Wait()

	var delays []time.Duration
	var got, frames int64
	for _, c := range clients {
		delays = append(delays, c.delays...)
		for s := range c.seen {
			if s >= first && s <= last {
				got++
			}
		}
		frames += c.frames
	}
	if len(delays) == 0 {
		return result{}, fmt.Errorf("%s: nothing received", name)
	}
	slices.Sort(delays)
	q := func(f float64) time.Duration { return delays[min(len(delays)-1, int(f*float64(len(delays))))] }
	return result{name: name, p50: q(0.5), p99: q(0.99), max: delays[len(delays)-1],
		delivered: float64(got) / float64(int64(conns)*(last-first+1)), cpu: cpu,
		framesPerSec: float64(frames) / duration.Seconds(), rate: float64(n) / elapsed.Seconds()}, nil
}

type client struct {
	pub    *publisher
	first  int64
	seen   map[int64]bool
	last   map[string]int64 // polling: the last event seen per customer
	delays []time.Duration
	frames int64
}

func (c *client) got(seq int64, at time.Time) {
	if seq < c.first || c.seen[seq] {
		return
	}
	c.seen[seq] = true
	if sent, ok := c.pub.sent(seq); ok {
		c.delays = append(c.delays, at.Sub(sent))
	}
}

var waitKey = []byte(`"wait_seconds":`)

func (c *client) stream(ctx context.Context, base string, cookie *http.Cookie, ready chan<- struct{}) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"api/events", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		return
	}
	defer resp.Body.Close()
	ready <- struct{}{}
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// the first state of a big queue: skip the rest of the line
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			return
		}
		now := time.Now()
		if !bytes.HasPrefix(line, []byte("data: {\"seq\"")) {
			continue
		}
		c.frames++
		// A delta: find the event's wait_seconds, its sequence number.
		if i := bytes.Index(line, waitKey); i >= 0 {
			rest := line[i+len(waitKey):]
			j := bytes.IndexAny(rest, ",}")
			if seq, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
				c.got(seq, now)
			}
		}
	}
}

func (c *client) poll(ctx context.Context, base string, cookie *http.Cookie) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"api/state", nil)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return
		}
		now := time.Now()
		c.frames++
		var st struct {
			Waiting []struct {
				OpenID      string `json:"openid"`
				WaitSeconds int64  `json:"wait_seconds"`
			} `json:"waiting"`
		}
		if json.Unmarshal(body, &st) == nil {
			for _, w := range st.Waiting {
				if w.WaitSeconds > c.last[w.OpenID] {
					c.last[w.OpenID] = w.WaitSeconds
					c.got(w.WaitSeconds, now)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitFor waits until the console shows at least n waiting customers.
func waitFor(base string, cookie *http.Cookie, n int) (int, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", base+"api/state", nil)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := strings.Count(string(body), `"openid"`); got >= n {
				return len(body), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the console never showed %d waiting customers", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cpuSeconds is the user+system CPU time of a process (Linux /proc).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func numCPU() int { return runtime.NumCPU() }

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// loadAverage is the 1-minute load average (Linux), to read the figures
// against: other work on the machine inflates delays.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}
