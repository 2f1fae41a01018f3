package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

// apiReply is one scripted answer of the test API server.
type apiReply struct {
	status int // 0 = 200
	body   string
}

var (
	replyOK         = apiReply{body: `{"errcode":0,"errmsg":"ok"}`}
	replyBusy       = apiReply{body: `{"errcode":-1,"errmsg":"system error"}`}
	replyBadToken   = apiReply{body: `{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest"}`}
	replyMalformed  = apiReply{body: `<html>502 Bad Gateway</html>`}
	replyBadGateway = apiReply{status: http.StatusBadGateway, body: `bad gateway`}
)

// apiRequest is what the test API server saw.
type apiRequest struct {
	Method      string
	Path        string
	Query       url.Values
	ContentType string
	Body        []byte
}

// apiServer is a minimal WeChat API stand-in: respond decides each answer
// from the request and its 0-based index.
type apiServer struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []apiRequest
	respond func(n int, req apiRequest) apiReply
}

func newAPIServer(t testing.TB, respond func(n int, req apiRequest) apiReply) *apiServer {
	t.Helper()
	s := &apiServer{respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := apiRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), ContentType: r.Header.Get("Content-Type"), Body: body}
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		reply := s.respond(n, req)
		if reply.status != 0 {
			w.WriteHeader(reply.status)
		}
		_, _ = io.WriteString(w, reply.body)
	}))
	t.Cleanup(s.Close)
	return s
}

// inSequence answers the n-th request with replies[n], repeating the last.
func inSequence(replies ...apiReply) func(int, apiRequest) apiReply {
	return func(n int, _ apiRequest) apiReply {
		return replies[min(n, len(replies)-1)]
	}
}

func (s *apiServer) requests() []apiRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]apiRequest(nil), s.reqs...)
}

// rotatingTokens is a TokenSource handing out tok-1, tok-2, …: Invalidate of
// the current token moves to the next one.
type rotatingTokens struct {
	mu          sync.Mutex
	n           int
	invalidated int
}

func (r *rotatingTokens) Token(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("tok-%d", r.n+1), nil
}

func (r *rotatingTokens) Invalidate(_ context.Context, bad string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if bad == fmt.Sprintf("tok-%d", r.n+1) {
		r.n++
		r.invalidated++
	}
	return nil
}

// sleepRecorder replaces the client's sleep.
type sleepRecorder struct {
	mu    sync.Mutex
	slept []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.slept = append(s.slept, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) durations() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.slept...)
}

const testBackoff = 100 * time.Millisecond

func newTestClient(t testing.TB, srv *apiServer, tokens wechat.TokenSource, sleep *sleepRecorder, mutate ...func(*wechat.ClientConfig)) *wechat.Client {
	t.Helper()
	cfg := wechat.ClientConfig{
		BaseURL:    srv.URL,
		Tokens:     tokens,
		HTTPClient: srv.Client(),
		MaxRetries: 3,
		Backoff:    testBackoff,
		MaxBackoff: time.Second,
	}
	if sleep != nil {
		cfg.Sleep = sleep.Sleep
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := wechat.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func getWaitCase(c *wechat.Client) error {
	_, err := c.GetWaitCase(context.Background())
	return err
}

func sendText(c *wechat.Client) error {
	return c.SendText(context.Background(), "OPENID", "hello", "")
}

func TestClientRetryPolicy(t *testing.T) {
	// rejectFirstToken answers 40001 to tok-1 and ok to any later token.
	rejectFirstToken := func(ok apiReply) func(int, apiRequest) apiReply {
		return func(_ int, req apiRequest) apiReply {
			if req.Query.Get("access_token") == "tok-1" {
				return replyBadToken
			}
			return ok
		}
	}
	cases := []struct {
		name         string
		respond      func(int, apiRequest) apiReply
		call         func(*wechat.Client) error
		wantRequests int
		wantSleeps   int
		wantRefresh  int
		check        func(t *testing.T, err error)
	}{
		{
			name:         "token error invalidates the token and retries once with a fresh one",
			respond:      rejectFirstToken(apiReply{body: `{"count":0,"waitcaselist":[]}`}),
			call:         getWaitCase,
			wantRequests: 2, wantRefresh: 1,
			check: wantNoError,
		},
		{
			name:         "token error on custom send is retried too: WeChat did nothing",
			respond:      rejectFirstToken(replyOK),
			call:         sendText,
			wantRequests: 2, wantRefresh: 1,
			check: wantNoError,
		},
		{
			name:         "token error again after the refresh is returned, not refreshed twice",
			respond:      inSequence(replyBadToken),
			call:         getWaitCase,
			wantRequests: 2, wantRefresh: 1,
			check: func(t *testing.T, err error) {
				if !wechat.IsTokenError(err) {
					t.Fatalf("err = %v, want a token error", err)
				}
			},
		},
		{
			name:         "system busy twice then ok succeeds after two backoffs",
			respond:      inSequence(replyBusy, replyBusy, apiReply{body: `{"count":1,"waitcaselist":[{"openid":"o1","createtime":1}]}`}),
			call:         getWaitCase,
			wantRequests: 3, wantSleeps: 2,
			check: wantNoError,
		},
		{
			name:         "system busy is retried on custom send: WeChat did not carry it out",
			respond:      inSequence(replyBusy, replyOK),
			call:         sendText,
			wantRequests: 2, wantSleeps: 1,
			check: wantNoError,
		},
		{
			name:         "system busy beyond MaxRetries returns the APIError",
			respond:      inSequence(replyBusy),
			call:         getWaitCase,
			wantRequests: 4, wantSleeps: 3,
			check: func(t *testing.T, err error) {
				wantErrCode(t, err, -1)
				if !wechat.IsRetryable(err) || wechat.IsPermanent(err) {
					t.Fatalf("-1 must be retryable and not permanent: %v", err)
				}
			},
		},
		{
			name:         "45015 outside the 48-hour window is permanent and not retried",
			respond:      inSequence(apiReply{body: `{"errcode":45015,"errmsg":"response out of time limit or subscription is canceled"}`}),
			call:         sendText,
			wantRequests: 1,
			check: func(t *testing.T, err error) {
				wantErrCode(t, err, 45015)
				if !wechat.IsPermanent(err) || wechat.IsRetryable(err) {
					t.Fatalf("45015 must be permanent: %v", err)
				}
			},
		},
		{
			name:         "65401 invalid kf account is permanent and not retried",
			respond:      inSequence(apiReply{body: `{"errcode":65401,"errmsg":"invalid kf_account"}`}),
			call:         func(c *wechat.Client) error { _, err := c.GetSessionList(context.Background(), "x@y"); return err },
			wantRequests: 1,
			check: func(t *testing.T, err error) {
				wantErrCode(t, err, 65401)
				if !wechat.IsPermanent(err) {
					t.Fatalf("65401 must be permanent: %v", err)
				}
			},
		},
		{
			name:         "45009 quota is not retried in the call but is retryable later",
			respond:      inSequence(apiReply{body: `{"errcode":45009,"errmsg":"reach max api daily quota limit"}`}),
			call:         getWaitCase,
			wantRequests: 1,
			check: func(t *testing.T, err error) {
				wantErrCode(t, err, 45009)
				if wechat.IsPermanent(err) || !wechat.IsRetryable(err) {
					t.Fatalf("45009 must be retryable later, not permanent: %v", err)
				}
			},
		},
		{
			name:         "HTTP 5xx on a read is retried",
			respond:      inSequence(replyBadGateway, apiReply{body: `{"count":0}`}),
			call:         getWaitCase,
			wantRequests: 2, wantSleeps: 1,
			check: wantNoError,
		},
		{
			name:         "HTTP 5xx on custom send is returned at once: it may have been delivered",
			respond:      inSequence(replyBadGateway, replyOK),
			call:         sendText,
			wantRequests: 1,
			check: func(t *testing.T, err error) {
				var statusErr *wechat.HTTPStatusError
				if !errors.As(err, &statusErr) || statusErr.StatusCode != http.StatusBadGateway {
					t.Fatalf("err = %v, want HTTPStatusError 502", err)
				}
				if !wechat.IsRetryable(err) || wechat.IsPermanent(err) {
					t.Fatalf("5xx must be retryable: %v", err)
				}
			},
		},
		{
			name:         "HTTP 404 is permanent",
			respond:      inSequence(apiReply{status: http.StatusNotFound}),
			call:         getWaitCase,
			wantRequests: 1,
			check: func(t *testing.T, err error) {
				if !wechat.IsPermanent(err) {
					t.Fatalf("404 must be permanent: %v", err)
				}
			},
		},
		{
			name:         "malformed JSON on a read is retried then returned as ErrMalformedResponse",
			respond:      inSequence(replyMalformed),
			call:         getWaitCase,
			wantRequests: 4, wantSleeps: 3,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, wechat.ErrMalformedResponse) || !wechat.IsRetryable(err) {
					t.Fatalf("err = %v, want retryable ErrMalformedResponse", err)
				}
			},
		},
		{
			name:         "malformed JSON on custom send is not retried",
			respond:      inSequence(replyMalformed, replyOK),
			call:         sendText,
			wantRequests: 1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, wechat.ErrMalformedResponse) {
					t.Fatalf("err = %v, want ErrMalformedResponse", err)
				}
			},
		},
		{
			name:         "wrong JSON types are malformed",
			respond:      inSequence(apiReply{body: `{"count":"many","waitcaselist":{}}`}, apiReply{body: `{"count":2}`}),
			call:         getWaitCase,
			wantRequests: 2, wantSleeps: 1,
			check: wantNoError,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(t, tc.respond)
			tokens := &rotatingTokens{}
			sleep := &sleepRecorder{}
			c := newTestClient(t, srv, tokens, sleep)
			tc.check(t, tc.call(c))
			if got := len(srv.requests()); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			if got := len(sleep.durations()); got != tc.wantSleeps {
				t.Errorf("backoff sleeps = %d, want %d", got, tc.wantSleeps)
			}
			if tokens.invalidated != tc.wantRefresh {
				t.Errorf("token refreshes = %d, want %d", tokens.invalidated, tc.wantRefresh)
			}
		})
	}
}

func wantNoError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantErrCode(t *testing.T, err error, code int) {
	t.Helper()
	var apiErr *wechat.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrCode != code {
		t.Fatalf("err = %v, want APIError %d", err, code)
	}
}

func TestClientBackoffDoublesWithJitterUpToMax(t *testing.T) {
	srv := newAPIServer(t, inSequence(replyBusy))
	sleep := &sleepRecorder{}
	c := newTestClient(t, srv, &rotatingTokens{}, sleep, func(cfg *wechat.ClientConfig) {
		cfg.MaxRetries = 6
		cfg.MaxBackoff = 400 * time.Millisecond
	})
	if err := getWaitCase(c); err == nil {
		t.Fatal("want an error after the retries")
	}
	got := sleep.durations()
	if len(got) != 6 {
		t.Fatalf("sleeps = %v, want 6", got)
	}
	for i, d := range got {
		full := min(testBackoff<<i, 400*time.Millisecond)
		if d < full/2 || d > full {
			t.Errorf("sleep %d = %v, want within [%v, %v]", i, d, full/2, full)
		}
	}
}

func TestClientNegativeMaxRetriesDisablesRetries(t *testing.T) {
	srv := newAPIServer(t, inSequence(replyBusy, replyOK))
	sleep := &sleepRecorder{}
	c := newTestClient(t, srv, &rotatingTokens{}, sleep, func(cfg *wechat.ClientConfig) { cfg.MaxRetries = -1 })
	wantErrCode(t, getWaitCase(c), -1)
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
}

func TestClientContextTimeoutStopsTheCall(t *testing.T) {
	release := make(chan struct{})
	srv := newAPIServer(t, func(int, apiRequest) apiReply {
		<-release
		return replyOK
	})
	// Registered after the server so it runs first: the handler must return
	// before the server can close.
	t.Cleanup(func() { close(release) })
	sleep := &sleepRecorder{}
	c := newTestClient(t, srv, &rotatingTokens{}, sleep)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.GetWaitCase(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if !wechat.IsRetryable(err) {
		t.Fatalf("a timeout must be retryable later: %v", err)
	}
	if n := len(sleep.durations()); n != 0 {
		t.Fatalf("retried %d times after the context ended", n)
	}
}

func TestClientContextCancelledDuringBackoff(t *testing.T) {
	srv := newAPIServer(t, inSequence(replyBusy))
	ctx, cancel := context.WithCancel(context.Background())
	c := newTestClient(t, srv, &rotatingTokens{}, nil, func(cfg *wechat.ClientConfig) {
		cfg.Sleep = func(ctx context.Context, d time.Duration) error {
			cancel() // the caller gives up while we wait
			<-ctx.Done()
			return ctx.Err()
		}
	})
	_, err := c.GetWaitCase(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	wantErrCode(t, err, -1) // the last WeChat answer is kept in the chain
	if wechat.IsRetryable(err) {
		t.Fatalf("a cancelled call is not retryable: %v", err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
}

func TestClientErrorsNeverContainTheToken(t *testing.T) {
	const token = "SECRET-ACCESS-TOKEN-0123456789"
	const secret = "APP-SECRET-abcdef"
	echo := func(int, apiRequest) apiReply {
		return apiReply{body: `{"errcode":40003,"errmsg":"invalid openid for access_token ` + token + `"}`}
	}
	closed := newAPIServer(t, inSequence(replyOK))
	closedURL := closed.URL
	closed.Close()
	cases := []struct {
		name    string
		baseURL string
		respond func(int, apiRequest) apiReply
		timeout time.Duration
	}{
		{name: "errmsg echoing the token", respond: echo},
		{name: "connection refused shows the URL", baseURL: closedURL},
		{name: "HTTP 500", respond: inSequence(apiReply{status: 500, body: token})},
		{name: "malformed body holding the token", respond: inSequence(apiReply{body: `{"access_token":"` + token + `",`})},
		{name: "context timeout", respond: func(int, apiRequest) apiReply { time.Sleep(200 * time.Millisecond); return replyOK }, timeout: 20 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.baseURL
			hc := http.DefaultClient
			if tc.respond != nil {
				srv := newAPIServer(t, tc.respond)
				base, hc = srv.URL, srv.Client()
			}
			c, err := wechat.NewClient(wechat.ClientConfig{
				BaseURL: base, AppID: "wxapp", Secret: secret, HTTPClient: hc,
				Tokens: staticToken(token), MaxRetries: -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			err = c.SendText(ctx, "OPENID", "hi", "")
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range []string{token, secret} {
				if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v", err), s) {
					t.Fatalf("error leaks a credential: %v", err)
				}
			}
		})
	}
}

// staticToken is a TokenSource that always returns the same token.
type staticToken string

func (s staticToken) Token(context.Context) (string, error)    { return string(s), nil }
func (s staticToken) Invalidate(context.Context, string) error { return nil }

func TestClientConfigHidesTheSecret(t *testing.T) {
	cfg := wechat.ClientConfig{AppID: "wxapp", Secret: "APP-SECRET-abcdef"}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(s, cfg.Secret) {
			t.Fatalf("printed config shows the secret: %s", s)
		}
	}
	f := &wechat.StableTokenFetcher{AppID: "wxapp", Secret: "APP-SECRET-abcdef"}
	if s := fmt.Sprintf("%v %+v", f, f); strings.Contains(s, f.Secret) {
		t.Fatalf("printed fetcher shows the secret: %s", s)
	}
}

func TestNewClientValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name string
		cfg  wechat.ClientConfig
		want string
	}{
		{"AppID is required without a token source", wechat.ClientConfig{Secret: "s"}, "AppID"},
		{"Secret is required without a token source", wechat.ClientConfig{AppID: "wx"}, "Secret"},
		{"BaseURL must be absolute", wechat.ClientConfig{BaseURL: "api.weixin.qq.com", Tokens: staticToken("t")}, "BaseURL"},
		{"RateLimit must not be negative", wechat.ClientConfig{Tokens: staticToken("t"), RateLimit: -1}, "RateLimit"},
		{"Backoff must not be negative", wechat.ClientConfig{Tokens: staticToken("t"), Backoff: -time.Second}, "Backoff"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wechat.NewClient(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
	if _, err := wechat.NewClient(wechat.ClientConfig{AppID: "wx", Secret: "s"}); err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
}

func TestClientRateLimitWaitsForATokenBucketSlot(t *testing.T) {
	srv := newAPIServer(t, inSequence(apiReply{body: `{"count":0}`}))
	// One request per 1000 s with a burst of 1: the first call passes, the
	// second would have to wait far beyond its deadline and fails at once.
	c := newTestClient(t, srv, staticToken("t"), nil, func(cfg *wechat.ClientConfig) {
		cfg.RateLimit = 0.001
		cfg.RateBurst = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.GetWaitCase(ctx); err != nil {
		t.Fatalf("first call: %v", err)
	}
	if _, err := c.GetWaitCase(ctx); err == nil {
		t.Fatal("second call passed the rate limit")
	}
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
}

func TestClientDefaultTokenSourceUsesStableToken(t *testing.T) {
	srv := newAPIServer(t, func(_ int, req apiRequest) apiReply {
		if req.Path == "/cgi-bin/stable_token" {
			return apiReply{body: `{"access_token":"fetched-token","expires_in":7200}`}
		}
		if req.Query.Get("access_token") != "fetched-token" {
			return replyBadToken
		}
		return apiReply{body: `{"count":0}`}
	})
	c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: srv.URL, AppID: "wxapp", Secret: "s", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.GetWaitCase(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var fetches int
	for _, r := range srv.requests() {
		if r.Path == "/cgi-bin/stable_token" {
			fetches++
		}
	}
	if fetches != 1 {
		t.Fatalf("stable_token fetched %d times for 3 calls, want 1", fetches)
	}
}
