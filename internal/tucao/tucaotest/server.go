// Package tucaotest is a fake 兔小巢 (Tucao) feedback API for tests and for
// `kefu demo`. It is a real HTTP server (httptest) that keeps posts and
// replies in memory and enforces what the real service enforces, so a client
// that passes here behaves on txc.qq.com too.
//
// # Endpoint
//
// GET /api/v1/{product_id}/posts with the headers Timestamp (unix seconds,
// exactly ten digits) and Signature (md5 hex of Timestamp + secret). Query:
// count (1..100, default 20), max_id (answer posts with id <= max_id), from
// and to (YYYYMMDD, whole days in Asia/Shanghai matched against created_at:
// from is the first day, to the day after the last — exclusive, as in the
// seed, where from=20180123&to=20180124 is January 23rd alone; a to that is
// not after from selects nothing). Posts come newest first (largest id first). When older posts
// match, pagination.next_page_url is
// "/api/v1/{product_id}/posts?max_id=<id of the next older post>" followed
// by the count, from and to of the request when it had them; on the last
// page it is null. pagination.total counts every post in the from/to window
// and is null without a window. The body is shaped like the example in Tucao's API documentation:
// {"status":0,"message":null,"pagination":{"per_page","next_page_url",
// "from","to","total"},"object":"post","data":[…]}.
//
// # Errors
//
// Failures answer {"status": code, "message": text} with these codes (the
// constants live in package tucao; Tucao's API documentation names none, so each mirrors
// its HTTP status):
//
//	HTTP 400  40001 StatusInvalidParameter  count outside 1..100, bad max_id, from or to
//	HTTP 401  40101 StatusMissingAuth       Timestamp or Signature missing or malformed
//	HTTP 401  40102 StatusStaleTimestamp    Timestamp more than 300 s from the server's clock
//	HTTP 401  40103 StatusBadSignature      Signature is not md5(Timestamp + secret)
//	HTTP 404  40401 StatusUnknownProduct    another product id
//	HTTP 429  42901 StatusRateLimited       over the per-minute budget; Retry-After in seconds
//	HTTP 500  50001 StatusInternalError     injected server fault
//
// Checks run in that order of concern: product, headers, signature, rate
// limit, parameters. The rate limit is a sliding window: at most RateLimit
// (default 100) accepted requests in the last 60 seconds of the server's
// clock; rejected requests do not count. The server's clock (Options.Clock,
// SetClock) is the one timestamps are checked against and the one every
// answer's Date header tells, so a test can share a tucao.FakeClock between
// client and server, or give the server a clock of its own to skew it.
//
// # Faults
//
// FailNext queues faults that the next requests meet before any other check
// (they stand for the infrastructure in front of the API): a 500, a slow
// answer (Options.SlowDelay, real time, then a normal answer), a truncated
// JSON body, or a 429. Faulted requests do not count against the rate limit
// but do count in RequestCount.
//
// # State
//
// AddPost, AddReply, AddReplyFrom and SetFlag change posts the way the
// service does (new 18-digit ids that start with the creation time in unix
// seconds and always increase; updated_at, reply_count, last_reply_at and
// has_admin_reply follow replies; flags bump updated_at). Generate fills the
// server with realistic posts. PushWebhook sends the webhook JSON that
// Tucao's admin console can be configured to POST.
//
// # Feedback page
//
// {URL}/product/{product_id} is the page customers open (put
// URL()+"/product/" where kefu expects https://support.qq.com/product/). A
// form POST of openid, nickname (at most 8 characters) and avatar (an https
// png or jpg URL) logs the customer in under that openid — Tucao's
// third-party login; anything missing or invalid leaves the page anonymous.
// An optional customInfo comes back as the extra of the posts written after
// that login.
// POST {URL}/product/{product_id}/post with content then creates a post by
// the logged-in customer, as typing on the page does. Logins lists the
// logins accepted. See login.go.
package tucaotest

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

// Defaults of Options: the product of the example in Tucao's API documentation.
const (
	DefaultProductID          = "1234"
	DefaultSecret             = "tucao123"
	DefaultRateLimit          = 100
	DefaultTimestampTolerance = 300 * time.Second
	DefaultSlowDelay          = 20 * time.Second
	defaultCount              = 20
	rateWindow                = time.Minute
	defaultAvatar             = "https://txc.qq.com/static/desktop/img/products/def-product-logo.png"
)

// Server is the fake Tucao API. Its methods are safe for concurrent use.
type Server struct {
	ts        *httptest.Server
	done      chan struct{}
	closeOnce sync.Once
	webhooks  *http.Client

	mu        sync.Mutex
	productID string
	secret    string
	clock     tucao.Clock
	rateLimit int
	tolerance time.Duration
	slowDelay time.Duration
	omitDate  bool

	posts       []*postState // ascending id
	byID        map[string]*postState
	users       map[string]int64 // openid -> user_id
	lastPostID  int64
	lastReplyID int64
	lastEventID int64
	rng         *rand.Rand

	faults   []FaultKind
	requests int
	times    []time.Time // clock time of every request, in arrival order
	accepted []time.Time // accepted requests in the rate window, oldest first

	sessions map[string]Login // feedback page session cookie -> logged-in user
	logins   []Login
}

type postState struct {
	post    tucao.Post
	created time.Time
	replies []Reply
}

// New starts a server. Close it when done.
func New(opts Options) *Server {
	if opts.ProductID == "" {
		opts.ProductID = DefaultProductID
	}
	if opts.Secret == "" {
		opts.Secret = DefaultSecret
	}
	if opts.Clock == nil {
		opts.Clock = tucao.SystemClock()
	}
	switch {
	case opts.RateLimit == 0:
		opts.RateLimit = DefaultRateLimit
	case opts.RateLimit < 0:
		opts.RateLimit = 0
	}
	if opts.TimestampTolerance <= 0 {
		opts.TimestampTolerance = DefaultTimestampTolerance
	}
	if opts.SlowDelay <= 0 {
		opts.SlowDelay = DefaultSlowDelay
	}
	s := &Server{
		done:      make(chan struct{}),
		webhooks:  &http.Client{Timeout: 10 * time.Second},
		productID: opts.ProductID,
		secret:    opts.Secret,
		clock:     opts.Clock,
		rateLimit: opts.RateLimit,
		tolerance: opts.TimestampTolerance,
		slowDelay: opts.SlowDelay,
		omitDate:  opts.OmitDate,
		byID:      make(map[string]*postState),
		users:     make(map[string]int64),
		rng:       rand.New(rand.NewPCG(1, 2)),
		sessions:  make(map[string]Login),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/{product}/posts", s.handlePosts)
	mux.HandleFunc("GET /product/{product}", s.handleLogin)
	mux.HandleFunc("POST /product/{product}", s.handleLogin)
	mux.HandleFunc("POST /product/{product}/post", s.handleWrite)
	s.ts = httptest.NewServer(mux)
	return s
}

// URL is the base URL to put in tucao.Config.BaseURL.
func (s *Server) URL() string { return s.ts.URL }

// ProductID returns the product id the server answers for.
func (s *Server) ProductID() string { return s.productID }

// Secret returns the product's secret.
func (s *Server) Secret() string { return s.secret }

// ClientConfig returns a client configuration pointing at this server, with
// the server's clock.
func (s *Server) ClientConfig() tucao.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tucao.Config{BaseURL: s.ts.URL, ProductID: s.productID, Secret: s.secret, Clock: s.clock}
}

// Close stops the server, cutting short any slow answer in progress.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.Close()
	})
}
