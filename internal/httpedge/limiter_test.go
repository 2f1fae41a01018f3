package httpedge_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/httpedge"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestLimiterBucketPerClient(t *testing.T) {
	clock := newClock()
	l := httpedge.NewLimiter(httpedge.LimiterConfig{Rate: 10, Now: clock.Now})
	if l.Burst() != 20 {
		t.Fatalf("burst %d, want twice the rate", l.Burst())
	}
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	for i := range 20 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow(a)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("request beyond the burst: allowed %v, retry after %v; want refused, 100ms", ok, wait)
	}
	if ok, _ := l.Allow(b); !ok {
		t.Fatal("another client was refused because of the first")
	}
	// A refused request takes nothing: after one interval exactly one more
	// request is allowed, however many were refused meanwhile.
	for range 5 {
		l.Allow(a)
	}
	clock.Advance(100 * time.Millisecond)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("refused after the bucket refilled one token")
	}
	if ok, _ := l.Allow(a); ok {
		t.Fatal("a second request allowed on one refilled token")
	}
	// One IPv6 host holds a /64: all of it is one client.
	v6a, v6b := netip.MustParseAddr("2001:db8:5:6::1"), netip.MustParseAddr("2001:db8:5:6:ffff::2")
	for range 20 {
		l.Allow(v6a)
	}
	if ok, _ := l.Allow(v6b); ok {
		t.Fatal("another address of the same /64 got a fresh bucket")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:5:7::1")); !ok {
		t.Fatal("another /64 was refused")
	}
}

func TestLimiterSmallRateStillAllowsAPageAndItsImage(t *testing.T) {
	l := httpedge.NewLimiter(httpedge.LimiterConfig{Rate: 0.1, Now: newClock().Now})
	if l.Burst() != 2 {
		t.Fatalf("burst %d, want 2", l.Burst())
	}
	a := netip.MustParseAddr("198.51.100.1")
	l.Allow(a)
	l.Allow(a)
	if ok, wait := l.Allow(a); ok || wait != 10*time.Second {
		t.Fatalf("third request: allowed %v, retry after %v", ok, wait)
	}
}

func TestLimiterOff(t *testing.T) {
	for _, r := range []float64{0, -1} {
		l := httpedge.NewLimiter(httpedge.LimiterConfig{Rate: r})
		next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
		if l.Enabled() {
			t.Errorf("rate %v: enabled", r)
		}
		for range 1000 {
			if ok, _ := l.Allow(netip.MustParseAddr("198.51.100.1")); !ok {
				t.Fatalf("rate %v refused a request", r)
			}
		}
		if fmt.Sprintf("%p", l.Handler(next)) != fmt.Sprintf("%p", next) {
			t.Errorf("rate %v: Handler wraps its argument", r)
		}
	}
}

// limitedServer serves 200 behind a limiter and counts what got through.
func limitedServer(t *testing.T, cfg httpedge.LimiterConfig) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var served, rejected atomic.Int64
	cfg.OnReject = func() { rejected.Add(1) }
	l := httpedge.NewLimiter(cfg)
	hs := httptest.NewServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		io.WriteString(w, "success")
	})))
	t.Cleanup(hs.Close)
	return hs, &served, &rejected
}

func get(t *testing.T, url, xff string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		if p := httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, body); p.Type != httpapi.RateLimited.URI() {
			t.Fatalf("429 of type %q, want %q", p.Type, httpapi.RateLimited.URI())
		}
	}
	return resp
}

func TestLimiterOverHTTPBehindATrustedProxy(t *testing.T) {
	clock := newClock()
	hs, served, rejected := limitedServer(t, httpedge.LimiterConfig{Rate: 1, Now: clock.Now,
		Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	for i := range 2 {
		if resp := get(t, hs.URL, "198.51.100.1"); resp.StatusCode != 200 {
			t.Fatalf("request %d of the burst: %d", i+1, resp.StatusCode)
		}
	}
	resp := get(t, hs.URL, "198.51.100.1")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("burst+1: %d, Retry-After %q; want 429, 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The client cannot escape its bucket by writing another address
	// left of the one the proxy appended.
	if resp := get(t, hs.URL, "203.0.113.99, 198.51.100.1"); resp.StatusCode != 429 {
		t.Fatalf("spoofed left-most hop: %d", resp.StatusCode)
	}
	if resp := get(t, hs.URL, "198.51.100.2"); resp.StatusCode != 200 {
		t.Fatalf("another client: %d", resp.StatusCode)
	}
	if served.Load() != 3 || rejected.Load() != 2 {
		t.Fatalf("served %d, rejected %d; want 3 and 2", served.Load(), rejected.Load())
	}
}

func TestLimiterIgnoresAnUntrustedPeersForwardedFor(t *testing.T) {
	hs, served, _ := limitedServer(t, httpedge.LimiterConfig{Rate: 1, Now: newClock().Now})
	codes := ""
	for i := range 4 {
		// A new "client" every time: were the header believed, every
		// request would have a full bucket.
		codes += fmt.Sprint(get(t, hs.URL, fmt.Sprintf("198.51.100.%d", i+1)).StatusCode, " ")
	}
	if codes != "200 200 429 429 " || served.Load() != 2 {
		t.Fatalf("answers %q, %d served; want 200 200 429 429, 2", codes, served.Load())
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	clock := newClock()
	l := httpedge.NewLimiter(httpedge.LimiterConfig{Rate: 1, Now: clock.Now, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	h := l.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	// A client that is being limited now and keeps trying...
	victim := netip.MustParseAddr("198.51.100.1")
	l.Allow(victim)
	l.Allow(victim)
	for i := range 50_000 {
		r := httptest.NewRequest("POST", "/wechat/callback", nil)
		r.RemoteAddr = "10.0.0.1:4000"
		// A different IPv4 address each time, and a different IPv6 /64.
		if i%2 == 0 {
			r.Header.Set("X-Forwarded-For", netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}).String())
		} else {
			r.Header.Set("X-Forwarded-For", fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff))
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if i%1000 == 0 {
			// ...stays known while it is active.
			if ok, _ := l.Allow(victim); ok {
				t.Fatalf("after %d other clients the limited client got a fresh bucket", i)
			}
		}
		if n := l.Len(); n > httpedge.DefaultMaxClients {
			t.Fatalf("%d clients tracked after %d requests, bound %d", n, i+1, httpedge.DefaultMaxClients)
		}
	}
	if n := l.Len(); n != httpedge.DefaultMaxClients {
		t.Fatalf("%d clients tracked after 50,000, want the bound %d", n, httpedge.DefaultMaxClients)
	}
}
