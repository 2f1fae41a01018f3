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
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
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

// Options configures a Server. Zero values take the defaults.
type Options struct {
	ProductID string      // default DefaultProductID
	Secret    string      // default DefaultSecret
	Clock     tucao.Clock // checks timestamps, drives the rate limit and stamps posts; default the system clock
	// RateLimit is the accepted requests per minute; 0 means 100 and a
	// negative value turns the limit off.
	RateLimit int
	// TimestampTolerance is how far Timestamp may be from the server's
	// clock; default 300 s.
	TimestampTolerance time.Duration
	// SlowDelay is how long a FaultSlow answer waits (real time); default
	// 20 s, longer than the client's default timeout.
	SlowDelay time.Duration
	// OmitDate leaves the Date header out of the API's answers, as a proxy
	// that strips it would: the client then cannot measure its clock skew.
	OmitDate bool
}

// FaultKind is a failure FailNext injects.
type FaultKind int

// Faults the server can inject.
const (
	FaultServerError   FaultKind = iota + 1 // HTTP 500, status 50001
	FaultSlow                               // answer after Options.SlowDelay
	FaultMalformedJSON                      // HTTP 200, truncated JSON body
	FaultRateLimited                        // HTTP 429, status 42901, Retry-After: 1
)

func (k FaultKind) String() string {
	switch k {
	case FaultServerError:
		return "server-error"
	case FaultSlow:
		return "slow"
	case FaultMalformedJSON:
		return "malformed-json"
	case FaultRateLimited:
		return "rate-limited"
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

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

// SetClock replaces the server's clock; nil means the system clock.
func (s *Server) SetClock(c tucao.Clock) {
	if c == nil {
		c = tucao.SystemClock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = c
}

// SetRateLimit sets the accepted requests per minute; 0 turns the limit off
// (for benchmarks). It also forgets the requests already counted.
func (s *Server) SetRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit = max(perMinute, 0)
	s.accepted = nil
}

// SetSlowDelay sets how long a FaultSlow answer waits.
func (s *Server) SetSlowDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowDelay = d
}

// FailNext makes the next n requests meet the fault kind, after any faults
// already queued.
func (s *Server) FailNext(n int, kind FaultKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, kind)
	}
}

// RequestCount is the number of requests the posts endpoint has received,
// whatever their outcome.
func (s *Server) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// RequestTimes returns the server-clock time of every request the posts
// endpoint has received, in arrival order, so a test can count requests in
// any 60-second window.
func (s *Server) RequestTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

func (s *Server) handlePosts(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	now := s.clock.Now()
	s.times = append(s.times, now)
	// Date tells the time by the server's clock, as the real service's
	// does by its own: the client measures its clock skew from it.
	if s.omitDate {
		w.Header()["Date"] = nil // net/http adds none when the key is present
	} else {
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	}
	var fault FaultKind
	if len(s.faults) > 0 {
		fault, s.faults = s.faults[0], s.faults[1:]
	}
	slowDelay := s.slowDelay
	s.mu.Unlock()

	switch fault {
	case FaultServerError:
		writeError(w, http.StatusInternalServerError, tucao.StatusInternalError, "internal server error")
		return
	case FaultRateLimited:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, tucao.StatusRateLimited, "too many requests")
		return
	case FaultMalformedJSON:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte(`{"status":0,"message":null,"pagination":{"per_page":20,"next_page_url":null},"object":"post","data":[{"id":"15398533`))
		return
	case FaultSlow:
		timer := time.NewTimer(slowDelay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}

	if r.PathValue("product") != s.productID {
		writeError(w, http.StatusNotFound, tucao.StatusUnknownProduct, "product not found")
		return
	}
	if status, msg := s.checkAuth(r); status != tucao.StatusOK {
		writeError(w, http.StatusUnauthorized, status, msg)
		return
	}
	if retry, ok := s.admit(); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		writeError(w, http.StatusTooManyRequests, tucao.StatusRateLimited, "too many requests")
		return
	}
	q, err := parseQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, tucao.StatusInvalidParameter, err.Error())
		return
	}
	// Written without HTML escaping, as Tucao does: next_page_url keeps a
	// plain "&" rather than "\u0026".
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s.list(q)); err != nil {
		writeError(w, http.StatusInternalServerError, tucao.StatusInternalError, "encode response")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(body.Bytes())
}

// checkAuth validates Timestamp and Signature.
func (s *Server) checkAuth(r *http.Request) (status int, message string) {
	ts, sig := r.Header.Get("Timestamp"), r.Header.Get("Signature")
	if len(ts) != 10 || !isDigits(ts) {
		return tucao.StatusMissingAuth, "Timestamp header must be a 10-digit unix time"
	}
	if len(sig) != 32 {
		return tucao.StatusMissingAuth, "Signature header must be a 32-character md5 hex"
	}
	sec, _ := strconv.ParseInt(ts, 10, 64)
	s.mu.Lock()
	now := s.clock.Now()
	s.mu.Unlock()
	if diff := now.Sub(time.Unix(sec, 0)); diff > s.tolerance || diff < -s.tolerance {
		return tucao.StatusStaleTimestamp, "Timestamp expired"
	}
	want := tucao.Sign(ts, s.secret)
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return tucao.StatusBadSignature, "Signature mismatch"
	}
	return tucao.StatusOK, ""
}

// admit applies the sliding-window rate limit; when it refuses, it says
// how long until a slot frees.
func (s *Server) admit() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rateLimit <= 0 {
		return 0, true
	}
	now := s.clock.Now()
	expired := 0
	for expired < len(s.accepted) && !s.accepted[expired].Add(rateWindow).After(now) {
		expired++
	}
	s.accepted = s.accepted[expired:]
	if len(s.accepted) >= s.rateLimit {
		return s.accepted[0].Add(rateWindow).Sub(now), false
	}
	s.accepted = append(s.accepted, now)
	return 0, true
}

type listQuery struct {
	count      int
	countGiven bool
	maxID      int64
	from, to   string
	start, end time.Time // the from/to window as [start, end); zero when open
}

func parseQuery(r *http.Request) (listQuery, error) {
	v := r.URL.Query()
	q := listQuery{count: defaultCount, maxID: -1}
	if c := v.Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 || n > tucao.MaxCount {
			return q, fmt.Errorf("count must be 1..%d", tucao.MaxCount)
		}
		q.count, q.countGiven = n, true
	}
	if m := v.Get("max_id"); m != "" {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n <= 0 {
			return q, fmt.Errorf("max_id must be a post id")
		}
		q.maxID = n
	}
	if f := v.Get("from"); f != "" {
		t, err := tucao.ParseDate(f)
		if err != nil {
			return q, fmt.Errorf("from must be YYYYMMDD")
		}
		q.from, q.start = f, t
	}
	if t := v.Get("to"); t != "" {
		day, err := tucao.ParseDate(t)
		if err != nil {
			return q, fmt.Errorf("to must be YYYYMMDD")
		}
		q.to, q.end = t, day // exclusive, as in the example in Tucao's API documentation
	}
	return q, nil
}

func (q listQuery) windowed() bool { return q.from != "" || q.to != "" }

func (q listQuery) inWindow(t time.Time) bool {
	if !q.start.IsZero() && t.Before(q.start) {
		return false
	}
	if !q.end.IsZero() && !t.Before(q.end) {
		return false
	}
	return true
}

type listResponse struct {
	Status     int          `json:"status"`
	Message    *string      `json:"message"`
	Pagination pagination   `json:"pagination"`
	Object     string       `json:"object"`
	Data       []tucao.Post `json:"data"`
}

type pagination struct {
	PerPage     int     `json:"per_page"`
	NextPageURL *string `json:"next_page_url"`
	From        *string `json:"from"`
	To          *string `json:"to"`
	Total       *int    `json:"total"`
}

func (s *Server) list(q listQuery) listResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	resp := listResponse{Object: "post", Data: []tucao.Post{}, Pagination: pagination{PerPage: q.count}}
	if q.from != "" {
		resp.Pagination.From = &q.from
	}
	if q.to != "" {
		resp.Pagination.To = &q.to
	}
	if q.windowed() {
		total := 0
		for _, ps := range s.posts {
			if q.inWindow(ps.created) {
				total++
			}
		}
		resp.Pagination.Total = &total
	}
	// Posts are kept in ascending id order: start below max_id and walk
	// towards older posts.
	i := len(s.posts) - 1
	if q.maxID > 0 {
		i = sort.Search(len(s.posts), func(k int) bool { return s.posts[k].post.IDInt() > q.maxID }) - 1
	}
	for ; i >= 0; i-- {
		ps := s.posts[i]
		if !q.inWindow(ps.created) {
			continue
		}
		if len(resp.Data) == q.count {
			next := s.nextPageURL(ps.post.ID, q)
			resp.Pagination.NextPageURL = &next
			break
		}
		resp.Data = append(resp.Data, render(ps, now))
	}
	return resp
}

func (s *Server) nextPageURL(maxID string, q listQuery) string {
	var b strings.Builder
	b.WriteString("/api/v1/" + s.productID + "/posts?max_id=" + maxID)
	if q.countGiven {
		b.WriteString("&count=" + strconv.Itoa(q.count))
	}
	if q.from != "" {
		b.WriteString("&from=" + q.from)
	}
	if q.to != "" {
		b.WriteString("&to=" + q.to)
	}
	return b.String()
}

func writeError(w http.ResponseWriter, httpStatus, status int, message string) {
	body, _ := json.Marshal(struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}{status, message})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
