package wechat

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// TokenSource hands out the account's access token. Token returns a token
// that is valid now; Invalidate tells the source that WeChat rejected bad
// (errcode 40001/40014/42001), so that the next Token fetches again —
// unless the source already holds a different token, in which case bad was
// stale and nothing is fetched. That rule is what lets N callers that hit
// 40001 together cause a single fetch.
//
// After a rejection the source first asks stable_token without
// force_refresh: when another system forced a refresh, that answers the
// current token and nobody's token is revoked. Only when WeChat hands back
// the very token it rejected is a refresh forced, and then at most once per
// MinForceRefresh and MaxForcePerDay times in 24 hours (WeChat's limits);
// beyond them Token fails with ErrForceRefreshLimited until the next force
// is allowed.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(ctx context.Context, bad string) error
}

// FetchedToken is an access token as the token endpoint returned it.
type FetchedToken struct {
	AccessToken string
	ExpiresIn   time.Duration
}

// TokenFetcher obtains a token from WeChat. forceRefresh asks for a new
// token even if the current one has not expired (and invalidates the current
// one at WeChat); it is only used after WeChat rejected the current token.
type TokenFetcher interface {
	FetchToken(ctx context.Context, forceRefresh bool) (FetchedToken, error)
}

// tokenMethod is the metrics and error name of the token endpoint.
const tokenMethod = "stable_token"

// StableTokenFetcher calls POST {BaseURL}/cgi-bin/stable_token. Unlike the
// older cgi-bin/token, the stable token endpoint does not invalidate the
// token other callers hold when asked without force_refresh, and in that mode
// it issues a new token only during the last 5 minutes of the old one's life.
type StableTokenFetcher struct {
	// BaseURL defaults to https://api.weixin.qq.com.
	BaseURL string
	AppID   string
	// Secret is the AppSecret. It is sent in the request body only and never
	// appears in errors or in String.
	Secret string
	// HTTPClient defaults to a client with a 10 s timeout.
	HTTPClient *http.Client
	// Metrics is optional.
	Metrics *Metrics
}

// String hides the secret should the fetcher be printed.
func (f *StableTokenFetcher) String() string {
	return fmt.Sprintf("StableTokenFetcher{BaseURL:%s AppID:%s Secret:REDACTED}", f.BaseURL, f.AppID)
}

// FetchToken implements TokenFetcher.
func (f *StableTokenFetcher) FetchToken(ctx context.Context, forceRefresh bool) (FetchedToken, error) {
	if f.AppID == "" || f.Secret == "" {
		return FetchedToken{}, fmt.Errorf("wechat %s: AppID and Secret are required: %w", tokenMethod, ErrInvalidRequest)
	}
	base := f.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	hc := f.HTTPClient
	if hc == nil {
		hc = apiDefaultHTTPClient
	}
	body, err := json.Marshal(struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}{"client_credential", f.AppID, f.Secret, forceRefresh})
	if err != nil {
		return FetchedToken{}, fmt.Errorf("wechat %s: encode request: %w", tokenMethod, err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	call := apiCall{
		method:      tokenMethod,
		httpMethod:  http.MethodPost,
		path:        "cgi-bin/stable_token",
		body:        body,
		contentType: apiJSONContentType,
	}
	start := time.Now()
	err = apiRoundTrip(ctx, hc, strings.TrimRight(base, "/"), call, "", &out)
	f.Metrics.observe(tokenMethod, errcodeLabel(err), time.Since(start))
	if err != nil {
		return FetchedToken{}, err
	}
	if out.AccessToken == "" || out.ExpiresIn <= 0 {
		return FetchedToken{}, fmt.Errorf("wechat %s: %w: missing access_token or expires_in", tokenMethod, ErrMalformedResponse)
	}
	return FetchedToken{AccessToken: out.AccessToken, ExpiresIn: time.Duration(out.ExpiresIn) * time.Second}, nil
}

// ErrForceRefreshLimited: WeChat rejected the token it still hands out, and
// a forced refresh would exceed WeChat's limits (one per 30 s, 20 a day). The
// API request was not sent; a later attempt may succeed.
var ErrForceRefreshLimited = errors.New("wechat: access token rejected and a forced refresh is not allowed yet (WeChat allows one per 30 s and 20 a day)")

// Defaults of TokenOptions.
const (
	DefaultRefreshMargin      = 5 * time.Minute
	DefaultMinForceRefresh    = 30 * time.Second
	DefaultMaxForcePerDay     = 20
	DefaultTokenLeaseTTL      = 15 * time.Second
	DefaultTokenPollInterval  = 100 * time.Millisecond
	DefaultTokenLocalCacheTTL = time.Minute
)

// TokenOptions configures the token sources. Zero values take the defaults.
type TokenOptions struct {
	// AppID is the key of the token in the kefu_token bucket. Required by
	// the KV source, ignored by the memory source.
	AppID string
	// RefreshMargin: a token this close to expiry is refreshed by one caller
	// while the others keep using it. At most 5 minutes, because stable_token
	// only issues a new token (without force_refresh) in the last 5 minutes
	// of the old one; a larger margin would fetch the same token again.
	RefreshMargin time.Duration
	// MinForceRefresh is the least time between two forced refreshes, and
	// MaxForcePerDay how many are allowed in any 24 hours: WeChat allows one
	// per 30 s and 20 a day for the appid. The KV source counts them in the
	// kefu_token bucket, so every replica keeps to the same budget (another
	// system forcing refreshes for the same appid is not seen and spends
	// WeChat's budget too).
	MinForceRefresh time.Duration
	MaxForcePerDay  int
	// LeaseTTL bounds how long one process may hold the refresh lease; a
	// crashed holder is replaced after it. Keep it above the HTTP timeout.
	LeaseTTL time.Duration
	// PollInterval is how often a process waiting for another one's refresh
	// reads the bucket again.
	PollInterval time.Duration
	// LocalCacheTTL: the KV source keeps a token in memory this long before
	// reading the bucket again (never past the refresh margin), so an API call
	// costs no KV round trip.
	LocalCacheTTL time.Duration
	// SealKey (32 bytes, from TokenSealKey) makes the KV source store the
	// token sealed with AES-256-GCM; nil stores it in clear. Ignored by the
	// memory source.
	SealKey []byte
	// Now is the clock (tests); defaults to time.Now.
	Now func() time.Time
}

func (o *TokenOptions) setDefaults() {
	o.RefreshMargin = cmp.Or(o.RefreshMargin, DefaultRefreshMargin)
	o.MinForceRefresh = cmp.Or(o.MinForceRefresh, DefaultMinForceRefresh)
	o.MaxForcePerDay = cmp.Or(o.MaxForcePerDay, DefaultMaxForcePerDay)
	o.LeaseTTL = cmp.Or(o.LeaseTTL, DefaultTokenLeaseTTL)
	o.PollInterval = cmp.Or(o.PollInterval, DefaultTokenPollInterval)
	o.LocalCacheTTL = cmp.Or(o.LocalCacheTTL, DefaultTokenLocalCacheTTL)
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate names the first bad field.
func (o TokenOptions) Validate() error {
	switch {
	case o.RefreshMargin < 0 || o.RefreshMargin > 5*time.Minute:
		return errors.New("token options: RefreshMargin must be between 0 and 5m")
	case o.MinForceRefresh < 0:
		return errors.New("token options: MinForceRefresh must not be negative")
	case o.MaxForcePerDay < 0:
		return errors.New("token options: MaxForcePerDay must not be negative")
	case o.LeaseTTL < 0:
		return errors.New("token options: LeaseTTL must not be negative")
	case o.PollInterval < 0:
		return errors.New("token options: PollInterval must not be negative")
	case o.LocalCacheTTL < 0:
		return errors.New("token options: LocalCacheTTL must not be negative")
	}
	return nil
}

// tokenState is a token with what the sources need to decide about it.
type tokenState struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	FetchedAt time.Time `json:"fetched_at"`
	// Invalid is set by Invalidate: WeChat rejected Token. The next refresh
	// forces only if stable_token hands Token back.
	Invalid bool `json:"invalid,omitempty"`
}

// fresh: usable and outside the refresh margin.
func (s tokenState) fresh(now time.Time, margin time.Duration) bool {
	return s.usable(now) && now.Before(s.ExpiresAt.Add(-margin))
}

// usable: not rejected and not expired.
func (s tokenState) usable(now time.Time) bool {
	return s.Token != "" && !s.Invalid && now.Before(s.ExpiresAt)
}

func newTokenState(t FetchedToken, now time.Time) tokenState {
	return tokenState{Token: t.AccessToken, ExpiresAt: now.Add(t.ExpiresIn), FetchedAt: now}
}

// forceGate grants forced refreshes within WeChat's limits; reserve counts
// one and fails with ErrForceRefreshLimited when none is allowed now.
type forceGate interface {
	reserve(ctx context.Context) error
}

// renew fetches the token to use instead of st (missing, expiring or
// rejected). A rejected token is first asked for again without force: if
// another system forced a refresh, stable_token answers the new current
// token, and forcing would revoke theirs. Only when WeChat hands back the
// rejected token itself does a forced refresh follow, if gate allows it.
func renew(ctx context.Context, f TokenFetcher, st tokenState, gate forceGate) (FetchedToken, error) {
	fetched, err := f.FetchToken(ctx, false)
	if err != nil {
		return FetchedToken{}, err
	}
	if !st.Invalid || fetched.AccessToken != st.Token {
		return fetched, nil
	}
	if err := gate.reserve(ctx); err != nil {
		return FetchedToken{}, err
	}
	return f.FetchToken(ctx, true)
}

// forceWindow is the span of MaxForcePerDay. A sliding 24 hours never
// allows more than WeChat's calendar day does.
const forceWindow = 24 * time.Hour

// forceBudget is the record of recent forced refreshes, oldest first.
type forceBudget struct {
	At []time.Time `json:"at"`
}

// take records a forced refresh at now if opts allow one; ok false
// otherwise. Entries older than forceWindow are dropped.
func (b *forceBudget) take(now time.Time, opts TokenOptions) bool {
	kept := b.At[:0]
	for _, t := range b.At {
		if now.Sub(t) < forceWindow {
			kept = append(kept, t)
		}
	}
	b.At = kept
	if len(b.At) >= opts.MaxForcePerDay {
		return false
	}
	if n := len(b.At); n > 0 && now.Sub(b.At[n-1]) < opts.MinForceRefresh {
		return false
	}
	b.At = append(b.At, now)
	return true
}

// memoryGate is the forced-refresh budget of one process.
type memoryGate struct {
	opts   TokenOptions
	mu     sync.Mutex
	budget forceBudget
}

func (g *memoryGate) reserve(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.budget.take(g.opts.Now(), g.opts) {
		return ErrForceRefreshLimited
	}
	return nil
}

// MemoryTokenSource caches the token in process memory: for a single
// process only (several processes each fetching would be fine with
// stable_token, but a forced refresh by one would break the others).
// Concurrent callers share one fetch.
type MemoryTokenSource struct {
	fetcher TokenFetcher
	opts    TokenOptions
	gate    *memoryGate
	// fetching is a one-slot semaphore held during a fetch; a channel rather
	// than a mutex so that waiters give up when their context ends.
	fetching chan struct{}

	mu    sync.Mutex
	state tokenState
}

// NewMemoryTokenSource returns an in-memory source around fetcher.
func NewMemoryTokenSource(fetcher TokenFetcher, opts TokenOptions) (*MemoryTokenSource, error) {
	if fetcher == nil {
		return nil, errors.New("memory token source: fetcher is required")
	}
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &MemoryTokenSource{fetcher: fetcher, opts: opts, gate: &memoryGate{opts: opts}, fetching: make(chan struct{}, 1)}, nil
}

func (s *MemoryTokenSource) current() tokenState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Token implements TokenSource.
func (s *MemoryTokenSource) Token(ctx context.Context) (string, error) {
	st := s.current()
	now := s.opts.Now()
	if st.fresh(now, s.opts.RefreshMargin) {
		return st.Token, nil
	}
	if st.usable(now) {
		// Inside the margin: one caller refreshes, the others keep the old token.
		select {
		case s.fetching <- struct{}{}:
		default:
			return st.Token, nil
		}
	} else {
		select {
		case s.fetching <- struct{}{}:
		case <-ctx.Done():
			return "", fmt.Errorf("wait for access token: %w", ctx.Err())
		}
	}
	defer func() { <-s.fetching }()

	// Another caller may have refreshed while we waited for the slot.
	st = s.current()
	now = s.opts.Now()
	if st.fresh(now, s.opts.RefreshMargin) {
		return st.Token, nil
	}
	fetched, err := renew(ctx, s.fetcher, st, s.gate)
	if err != nil {
		if st.usable(now) {
			// The old token still works; the next call tries again.
			return st.Token, nil
		}
		return "", fmt.Errorf("fetch access token: %w", err)
	}
	st = newTokenState(fetched, s.opts.Now())
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
	return st.Token, nil
}

// Invalidate implements TokenSource.
func (s *MemoryTokenSource) Invalidate(_ context.Context, bad string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Token != bad || s.state.Invalid {
		return nil
	}
	s.state.Invalid = true
	return nil
}
