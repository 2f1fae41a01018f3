package httpedge

import (
	"container/list"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/kefu-io/kefu/internal/httpapi"
)

// DefaultMaxClients is how many clients a Limiter tracks at most. A full
// table holds about 2.8 MiB of heap (measured), however many addresses an
// attacker sends from.
const DefaultMaxClients = 10_000

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	// Rate is the requests per second one client may make; 0 turns the
	// limiter off (Handler returns its argument).
	Rate float64
	// Burst is how many requests a client may make at once; 0 means twice
	// Rate, and never fewer than 2 (a page and its image).
	Burst int
	// MaxClients bounds the clients tracked at once (default
	// DefaultMaxClients). When full, the client seen least recently is
	// forgotten: it starts again with a full bucket, which costs an attacker
	// nothing they could not get from a fresh address anyway.
	MaxClients int
	// Trusted are the reverse proxies whose X-Forwarded-For names the
	// client (see ClientIP).
	Trusted []netip.Prefix
	// Now is the clock (time.Now when nil); tests pass a fake one.
	Now func() time.Time
	// OnReject, when set, is called for every request refused (a metric).
	OnReject func()
}

// Limiter is a token bucket per client, keyed by ClientIP: an IPv4 address,
// or the /64 network of an IPv6 one, since one IPv6 host usually holds a
// whole /64 and could otherwise take a fresh bucket for every request.
type Limiter struct {
	cfg LimiterConfig

	mu      sync.Mutex
	clients map[netip.Addr]*list.Element
	// lru orders the clients, least recently seen at the front.
	lru list.List
}

type client struct {
	key    netip.Addr
	bucket *rate.Limiter
}

// NewLimiter returns a limiter; a Rate of 0 or less makes one that allows
// everything.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.Burst <= 0 && cfg.Rate > 0 && !math.IsInf(cfg.Rate, 1) {
		cfg.Burst = max(2, int(math.Ceil(2*cfg.Rate)))
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{cfg: cfg, clients: make(map[netip.Addr]*list.Element)}
}

// Enabled reports whether the limiter limits anything.
func (l *Limiter) Enabled() bool { return l.cfg.Rate > 0 && !math.IsInf(l.cfg.Rate, 1) }

// Burst is the number of requests a client may make at once.
func (l *Limiter) Burst() int { return l.cfg.Burst }

// Len is the number of clients tracked now (at most MaxClients).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// Allow takes one token from addr's bucket. When there is none it reports
// false and how long until there is one.
func (l *Limiter) Allow(addr netip.Addr) (bool, time.Duration) {
	if !l.Enabled() {
		return true, 0
	}
	now := l.cfg.Now()
	bucket := l.bucket(clientKey(addr))
	res := bucket.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Duration(float64(time.Second) / l.cfg.Rate)
	}
	if d := res.DelayFrom(now); d > 0 {
		// Refused requests take nothing: give the reservation back.
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// bucket returns key's bucket, creating it (and forgetting the least
// recently seen client when the table is full).
func (l *Limiter) bucket(key netip.Addr) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.clients[key]; ok {
		l.lru.MoveToBack(e)
		return e.Value.(*client).bucket
	}
	for l.lru.Len() >= l.cfg.MaxClients {
		oldest := l.lru.Front()
		l.lru.Remove(oldest)
		delete(l.clients, oldest.Value.(*client).key)
	}
	c := &client{key: key, bucket: rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)}
	l.clients[key] = l.lru.PushBack(c)
	return c.bucket
}

// clientKey is an IPv4 address itself, or an IPv6 address's /64.
func clientKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

// Handler refuses a client's requests beyond its rate with 429 Too Many
// Requests and Retry-After (whole seconds, rounded up).
func (l *Limiter) Handler(next http.Handler) http.Handler {
	if !l.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := l.Allow(ClientIP(r, l.cfg.Trusted))
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		if l.cfg.OnReject != nil {
			l.cfg.OnReject()
		}
		// Retry-After is when the client's bucket holds a token again:
		// sooner would be refused too.
		httpapi.WriteProblem(w, http.StatusTooManyRequests, "too many requests from this client; retry after the Retry-After seconds",
			httpapi.Type(httpapi.RateLimited), httpapi.RetryAfter(wait))
	})
}
