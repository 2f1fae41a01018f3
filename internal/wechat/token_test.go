package wechat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

// fakeClock is a settable clock shared by token sources.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingFetcher issues tok-1, tok-2, … valid for two hours and records
// each call's force_refresh flag. By default every call issues a new token,
// as stable_token does once another system forced a refresh or the current
// token is near its end; with sticky set a call without force hands back the
// last token, as stable_token does while it lives.
type countingFetcher struct {
	calls  atomic.Int32
	sticky bool
	mu     sync.Mutex
	forced []bool
	issued int
	// delay widens the window in which concurrent callers could fetch too.
	delay time.Duration
	fail  error // guarded by mu
}

func (f *countingFetcher) FetchToken(ctx context.Context, force bool) (wechat.FetchedToken, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.forced = append(f.forced, force)
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return wechat.FetchedToken{}, ctx.Err()
		}
	}
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		return wechat.FetchedToken{}, fail
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sticky || force || f.issued == 0 {
		f.issued++
	}
	return wechat.FetchedToken{AccessToken: fmt.Sprintf("tok-%d", f.issued), ExpiresIn: 2 * time.Hour}, nil
}

func (f *countingFetcher) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *countingFetcher) forcedFlags() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.forced...)
}

func TestStableTokenFetcher(t *testing.T) {
	cases := []struct {
		name      string
		force     bool
		reply     apiReply
		wantToken string
		wantErr   func(error) bool
	}{
		{
			name:      "posts client_credential and decodes the token",
			reply:     apiReply{body: `{"access_token":"ACCESS","expires_in":7200}`},
			wantToken: "ACCESS",
		},
		{
			name:      "force refresh is sent when asked",
			force:     true,
			reply:     apiReply{body: `{"access_token":"NEW","expires_in":7200}`},
			wantToken: "NEW",
		},
		{
			name:  "an errcode is an APIError of stable_token",
			reply: apiReply{body: `{"errcode":40125,"errmsg":"invalid appsecret"}`},
			wantErr: func(err error) bool {
				var e *wechat.APIError
				return errors.As(err, &e) && e.Method == "stable_token" && wechat.IsPermanent(err)
			},
		},
		{
			name:    "a body without a token is malformed",
			reply:   apiReply{body: `{"expires_in":7200}`},
			wantErr: func(err error) bool { return errors.Is(err, wechat.ErrMalformedResponse) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(t, inSequence(tc.reply))
			f := &wechat.StableTokenFetcher{BaseURL: srv.URL, AppID: "wxAPPID", Secret: "THE-SECRET", HTTPClient: srv.Client()}
			got, err := f.FetchToken(context.Background(), tc.force)
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				if strings.Contains(err.Error(), "THE-SECRET") {
					t.Fatalf("error shows the secret: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got.AccessToken != tc.wantToken || got.ExpiresIn != 7200*time.Second {
					t.Fatalf("token = %+v", got)
				}
			}
			req := srv.requests()[0]
			if req.Method != http.MethodPost || req.Path != "/cgi-bin/stable_token" || len(req.Query) != 0 {
				t.Fatalf("request = %s %s?%s", req.Method, req.Path, req.Query.Encode())
			}
			var body map[string]any
			if err := json.Unmarshal(req.Body, &body); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"grant_type": "client_credential", "appid": "wxAPPID", "secret": "THE-SECRET", "force_refresh": tc.force}
			if fmt.Sprint(body) != fmt.Sprint(want) {
				t.Fatalf("body = %v, want %v", body, want)
			}
		})
	}
}

func newMemorySource(t *testing.T, f wechat.TokenFetcher, clock *fakeClock) *wechat.MemoryTokenSource {
	t.Helper()
	src, err := wechat.NewMemoryTokenSource(f, wechat.TokenOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func mustToken(t *testing.T, src wechat.TokenSource) string {
	t.Helper()
	tok, err := src.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func TestMemoryTokenSourceConcurrentCallersShareOneFetch(t *testing.T) {
	f := &countingFetcher{delay: 20 * time.Millisecond}
	src := newMemorySource(t, f, newFakeClock())
	var wg sync.WaitGroup
	tokens := make([]string, 20)
	for i := range tokens {
		wg.Go(func() { tokens[i] = mustToken(t, src) })
	}
	wg.Wait()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	for _, tok := range tokens {
		if tok != "tok-1" {
			t.Fatalf("tokens = %v, want all tok-1", tokens)
		}
	}
}

// newTokenSourceFunc builds a fresh, empty source of one implementation.
type newTokenSourceFunc func(t *testing.T, f wechat.TokenFetcher, clock *fakeClock) wechat.TokenSource

func TestMemoryTokenSourceContract(t *testing.T) {
	testTokenSourceContract(t, func(t *testing.T, f wechat.TokenFetcher, clock *fakeClock) wechat.TokenSource {
		return newMemorySource(t, f, clock)
	})
}

// testTokenSourceContract is the behaviour every TokenSource shares.
func testTokenSourceContract(t *testing.T, newSource newTokenSourceFunc) {
	cases := []struct {
		name string
		// act runs after the first token (tok-1) was fetched.
		act         func(src wechat.TokenSource, clock *fakeClock)
		wantToken   string
		wantFetches int32
		wantForced  []bool
		sticky      bool // the fetcher hands back the current token without force
	}{
		{
			name:        "a fresh token is reused",
			act:         func(wechat.TokenSource, *fakeClock) {},
			wantToken:   "tok-1",
			wantFetches: 1, wantForced: []bool{false},
		},
		{
			name:        "inside the 5-minute margin the token is refreshed without force",
			act:         func(_ wechat.TokenSource, c *fakeClock) { c.Advance(2*time.Hour - 4*time.Minute) },
			wantToken:   "tok-2",
			wantFetches: 2, wantForced: []bool{false, false},
		},
		{
			name:        "an expired token is refreshed without force",
			act:         func(_ wechat.TokenSource, c *fakeClock) { c.Advance(3 * time.Hour) },
			wantToken:   "tok-2",
			wantFetches: 2, wantForced: []bool{false, false},
		},
		{
			name: "a rejected token is replaced by the current one without force",
			act: func(s wechat.TokenSource, c *fakeClock) {
				c.Advance(time.Minute)
				_ = s.Invalidate(context.Background(), "tok-1")
			},
			wantToken:   "tok-2",
			wantFetches: 2, wantForced: []bool{false, false},
		},
		{
			name: "a rejected token handed back by stable_token is force-refreshed",
			act: func(s wechat.TokenSource, c *fakeClock) {
				_ = s.Invalidate(context.Background(), "tok-1")
			},
			sticky:      true,
			wantToken:   "tok-2",
			wantFetches: 3, wantForced: []bool{false, false, true},
		},
		{
			name: "invalidating twice still refreshes once",
			act: func(s wechat.TokenSource, c *fakeClock) {
				c.Advance(time.Minute)
				_ = s.Invalidate(context.Background(), "tok-1")
				_ = s.Invalidate(context.Background(), "tok-1")
			},
			sticky:      true,
			wantToken:   "tok-2",
			wantFetches: 3, wantForced: []bool{false, false, true},
		},
		{
			name: "invalidating a stale token does nothing",
			act: func(s wechat.TokenSource, c *fakeClock) {
				c.Advance(time.Minute)
				_ = s.Invalidate(context.Background(), "tok-0")
			},
			wantToken:   "tok-1",
			wantFetches: 1, wantForced: []bool{false},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			f := &countingFetcher{sticky: tc.sticky}
			src := newSource(t, f, clock)
			if tok := mustToken(t, src); tok != "tok-1" {
				t.Fatalf("first token = %s", tok)
			}
			tc.act(src, clock)
			if tok := mustToken(t, src); tok != tc.wantToken {
				t.Fatalf("token = %s, want %s", tok, tc.wantToken)
			}
			if n := f.calls.Load(); n != tc.wantFetches {
				t.Fatalf("fetches = %d, want %d", n, tc.wantFetches)
			}
			if got := f.forcedFlags(); fmt.Sprint(got) != fmt.Sprint(tc.wantForced) {
				t.Fatalf("force_refresh flags = %v, want %v", got, tc.wantForced)
			}
		})
	}

	t.Run("forced refreshes keep to one per 30 s and 20 a day", func(t *testing.T) {
		clock := newFakeClock()
		f := &countingFetcher{sticky: true}
		src := newSource(t, f, clock)
		forces := func() int {
			n := 0
			for _, forced := range f.forcedFlags() {
				if forced {
					n++
				}
			}
			return n
		}
		reject := func() error {
			t.Helper()
			tok := mustToken(t, src)
			if err := src.Invalidate(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			_, err := src.Token(context.Background())
			return err
		}
		if err := reject(); err != nil {
			t.Fatalf("first forced refresh: %v", err)
		}
		clock.Advance(29 * time.Second)
		if err := reject(); !errors.Is(err, wechat.ErrForceRefreshLimited) {
			t.Fatalf("a second force 29 s later: err = %v, want ErrForceRefreshLimited", err)
		}
		clock.Advance(time.Second)
		if _, err := src.Token(context.Background()); err != nil {
			t.Fatalf("30 s after the first force: %v", err)
		}
		for range 18 {
			clock.Advance(time.Minute)
			if err := reject(); err != nil {
				t.Fatal(err)
			}
		}
		if n := forces(); n != 20 {
			t.Fatalf("forced refreshes = %d, want 20", n)
		}
		clock.Advance(time.Minute)
		if err := reject(); !errors.Is(err, wechat.ErrForceRefreshLimited) {
			t.Fatalf("the 21st force within a day: err = %v, want ErrForceRefreshLimited", err)
		}
		if n := forces(); n != 20 {
			t.Fatalf("forced refreshes = %d, want still 20", n)
		}
		clock.Advance(24 * time.Hour)
		if _, err := src.Token(context.Background()); err != nil {
			t.Fatalf("a day later: %v", err)
		}
	})

	t.Run("a failed refresh keeps a still-valid token and fails once it expired", func(t *testing.T) {
		clock := newFakeClock()
		f := &countingFetcher{}
		src := newSource(t, f, clock)
		mustToken(t, src)
		f.setFail(&wechat.APIError{Method: "stable_token", ErrCode: -1, ErrMsg: "busy"})
		clock.Advance(2*time.Hour - time.Minute)
		if tok := mustToken(t, src); tok != "tok-1" {
			t.Fatalf("token = %s, want the still-valid tok-1", tok)
		}
		clock.Advance(2 * time.Minute)
		if _, err := src.Token(context.Background()); !wechat.IsRetryable(err) {
			t.Fatalf("err = %v, want the fetch error (-1) once the token expired", err)
		}
	})
}

func TestTokenOptionsValidate(t *testing.T) {
	_, err := wechat.NewMemoryTokenSource(&countingFetcher{}, wechat.TokenOptions{RefreshMargin: 10 * time.Minute})
	if err == nil || !strings.Contains(err.Error(), "RefreshMargin") {
		t.Fatalf("err = %v, want one naming RefreshMargin", err)
	}
}
