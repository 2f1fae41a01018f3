// # API client
//
// [Client] calls the 多客服 (multi-agent customer service) API: agent
// accounts (customservice/kfaccount/…), agent lists
// (cgi-bin/customservice/getkflist, getonlinekflist), sessions
// (customservice/kfsession/…) and the customer-service message
// (cgi-bin/message/custom/send). Every method takes a context first and
// returns typed results; every URL carries the access token from a
// [TokenSource] — [KVTokenSource] shares one token between replicas through
// the kefu_token bucket, [MemoryTokenSource] serves a single process.
//
// Failures are typed: [APIError] (errcode/errmsg from WeChat),
// [HTTPStatusError], [ErrMalformedResponse], [ErrInvalidRequest], or a
// network or context error. [IsTokenError], [IsPermanent] and [IsRetryable]
// classify them. Every error of a request that never left kefu (no token,
// the rate limit's wait, a failed dial or TLS handshake, a context that
// ended before the request was completely written — followed with
// net/http/httptrace) carries a [NotSentError]; [NotSent] adds the answers
// WeChat documents as not carried out (-1, 45009/45011, token errors, HTTP
// 429), and [Classify] turns it all into the one verdict the notifier and
// queuecare act on: done, refused, retry (certainly not sent) or unknown
// (may have been carried out; [UnknownReason] says why, and
// kefu_wechat_api_unknown_outcome_total counts it). Within one call the
// client
//
//   - on a token error (40001, 40014, 42001) invalidates the token, gets
//     the current one (see [TokenSource]: a forced refresh only when WeChat
//     hands back the rejected token) and retries once;
//   - on errcode -1 (system busy) retries with exponential backoff and jitter,
//     up to MaxRetries times;
//   - on HTTP 5xx, network errors and malformed bodies retries the same way,
//     but only for requests that are safe to repeat (reads, avatar upload)
//     or that certainly never reached WeChat: a POST such as custom/send
//     may have been carried out before the failure, and repeating it would
//     message the customer twice;
//   - returns at once on permanent errors (45015, 45047, 65400–65414, …) and
//     on the quota codes 45009/45011, which a few seconds of backoff cannot
//     clear: the caller retries those later.
//
// The access token and the AppSecret never appear in errors: transport
// errors carry the URL with the token replaced, and error messages echoed by
// WeChat are scrubbed.
//
// An optional client-side rate limit (RateLimit requests per second) keeps a
// process under WeChat's per-API frequency limits; [Metrics] counts attempts
// by API method and errcode.

package wechat

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultBaseURL is WeChat's API host.
const DefaultBaseURL = "https://api.weixin.qq.com"

// Defaults of ClientConfig.
const (
	DefaultHTTPTimeout = 10 * time.Second
	DefaultMaxRetries  = 3
	DefaultBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

const (
	apiJSONContentType = "application/json; charset=utf-8"
	// apiMaxResponseBytes bounds what we read from WeChat; the largest
	// answer (getkflist with many agents) is a few tens of KiB.
	apiMaxResponseBytes = 4 << 20
)

var apiDefaultHTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}

// ClientConfig configures a Client. Zero values take the defaults.
type ClientConfig struct {
	// BaseURL is the API host; tests and the demo point it at a fake.
	// Default DefaultBaseURL.
	BaseURL string
	// AppID and Secret are the official account's credentials. They are only
	// used to build the default token source when Tokens is nil. Secret is
	// never logged nor put in errors.
	AppID  string
	Secret string
	// HTTPClient defaults to a client with a DefaultHTTPTimeout timeout per
	// attempt.
	HTTPClient *http.Client
	// Tokens supplies access tokens. Default: a MemoryTokenSource around a
	// StableTokenFetcher for AppID/Secret. Services running in several
	// replicas pass a KVTokenSource.
	Tokens TokenSource
	// RateLimit is the client-side limit in requests per second over all
	// methods (retries included); 0 turns it off.
	RateLimit float64
	// RateBurst is the limiter's burst; default max(1, RateLimit).
	RateBurst int
	// MaxRetries is how many times a retryable failure is retried with
	// backoff (the single retry after a token refresh is not counted).
	// 0 means DefaultMaxRetries; a negative value disables retries.
	MaxRetries int
	// Backoff is the delay before the first retry; it doubles for each
	// further one up to MaxBackoff, and a random half of it is jitter.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Sleep waits between retries and returns early with ctx's error; a
	// seam for tests. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Metrics is optional (nil = no metrics).
	Metrics *Metrics
}

// String hides the secret should the config be printed.
func (c ClientConfig) String() string {
	return fmt.Sprintf("ClientConfig{BaseURL:%s AppID:%s Secret:REDACTED RateLimit:%g MaxRetries:%d}",
		c.BaseURL, c.AppID, c.RateLimit, c.MaxRetries)
}

// GoString hides the secret from %#v too.
func (c ClientConfig) GoString() string { return c.String() }

func (c *ClientConfig) setDefaults() {
	c.BaseURL = cmp.Or(c.BaseURL, DefaultBaseURL)
	c.HTTPClient = cmp.Or(c.HTTPClient, apiDefaultHTTPClient)
	c.RateBurst = cmp.Or(c.RateBurst, max(1, int(c.RateLimit)))
	c.MaxRetries = cmp.Or(c.MaxRetries, DefaultMaxRetries)
	c.Backoff = cmp.Or(c.Backoff, DefaultBackoff)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, DefaultMaxBackoff)
	if c.Sleep == nil {
		c.Sleep = apiSleep
	}
}

// Validate names the first missing or bad field.
func (c ClientConfig) Validate() error {
	u, err := url.Parse(c.BaseURL)
	switch {
	case c.BaseURL == "":
		return errors.New("wechat client config: BaseURL is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("wechat client config: BaseURL must be an absolute http(s) URL")
	case c.Tokens == nil && c.AppID == "":
		return errors.New("wechat client config: AppID is required (or set Tokens)")
	case c.Tokens == nil && c.Secret == "":
		return errors.New("wechat client config: Secret is required (or set Tokens)")
	case c.RateLimit < 0:
		return errors.New("wechat client config: RateLimit must not be negative")
	case c.RateBurst < 0:
		return errors.New("wechat client config: RateBurst must not be negative")
	case c.Backoff < 0 || c.MaxBackoff < 0:
		return errors.New("wechat client config: Backoff and MaxBackoff must not be negative")
	}
	return nil
}

// Client calls the WeChat 多客服 API. It is safe for concurrent use.
type Client struct {
	base    string
	hc      *http.Client
	tokens  TokenSource
	limiter *rate.Limiter
	cfg     ClientConfig
}

// NewClient applies the defaults, validates cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		hc:     cfg.HTTPClient,
		tokens: cfg.Tokens,
		cfg:    cfg,
	}
	if c.tokens == nil {
		src, err := NewMemoryTokenSource(&StableTokenFetcher{
			BaseURL:    cfg.BaseURL,
			AppID:      cfg.AppID,
			Secret:     cfg.Secret,
			HTTPClient: cfg.HTTPClient,
			Metrics:    cfg.Metrics,
		}, TokenOptions{})
		if err != nil {
			return nil, fmt.Errorf("wechat client: %w", err)
		}
		c.tokens = src
	}
	if cfg.RateLimit > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	return c, nil
}

// apiCall describes one API request.
type apiCall struct {
	method      string // API name for metrics and errors, e.g. "getwaitcase"
	httpMethod  string
	path        string     // relative to the base URL, e.g. "customservice/kfsession/getwaitcase"
	query       url.Values // without access_token
	body        []byte
	contentType string
	// idempotent: repeating the request after an ambiguous failure (5xx,
	// network error, malformed answer) cannot do harm.
	idempotent bool
}

// do runs call with the retry policy and decodes a successful answer into
// out (nil: only errcode is checked).
func (c *Client) do(ctx context.Context, call apiCall, out any) error {
	refreshed := false
	retries := 0
	for {
		token, sent, err := c.attempt(ctx, call, out)
		if err == nil {
			return nil
		}
		if IsTokenError(err) && sent && !refreshed {
			refreshed = true
			if ierr := c.tokens.Invalidate(ctx, token); ierr != nil {
				return fmt.Errorf("wechat %s: invalidate access token: %w (after: %w)", call.method, ierr, err)
			}
			continue
		}
		if retries >= c.cfg.MaxRetries || ctx.Err() != nil || !c.shouldRetry(call, err, sent) {
			return c.final(call, err)
		}
		d := c.backoff(retries)
		retries++
		if serr := c.cfg.Sleep(ctx, d); serr != nil {
			return c.final(call, fmt.Errorf("wechat %s: wait before retry: %w (after: %w)", call.method, serr, err))
		}
	}
}

// final counts an effect whose outcome is unknown before handing its error
// to the caller: a request that is not safe to repeat and may have been
// carried out (see Classify).
func (c *Client) final(call apiCall, err error) error {
	if !call.idempotent && Classify(err) == VerdictUnknown {
		c.cfg.Metrics.unknownOutcome(call.method, UnknownReason(err))
	}
	return err
}

// shouldRetry applies the in-call retry policy described at the top of
// this file.
func (c *Client) shouldRetry(call apiCall, err error, sent bool) bool {
	if code, ok := errCodeOf(err); ok {
		// -1 means WeChat did not carry the request out: safe to repeat.
		// Token errors from the token endpoint itself land here too and
		// are not retried (wrong secret, IP whitelist, …).
		return code == ErrCodeSystemBusy
	}
	if !IsRetryable(err) {
		return false
	}
	// Nothing reached WeChat (token fetch failed, no connection, the
	// gateway's 429), or repeating is harmless.
	return !sent || call.idempotent || NotSent(err)
}

// backoff returns the delay before retry n (0-based): Backoff·2ⁿ capped at
// MaxBackoff, of which a random half is jitter so that replicas retrying
// the same outage spread out.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.Backoff
	for i := 0; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// attempt makes one request. sent reports whether the request may have
// reached WeChat; token is the access token used. Every error of a request
// that never left kefu carries a *NotSentError.
func (c *Client) attempt(ctx context.Context, call apiCall, out any) (token string, sent bool, err error) {
	token, err = c.tokens.Token(ctx)
	if err != nil {
		return "", false, fmt.Errorf("wechat %s: access token: %w", call.method, &NotSentError{Err: err})
	}
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			return token, false, fmt.Errorf("wechat %s: rate limit: %w", call.method, &NotSentError{Err: err})
		}
	}
	start := time.Now()
	err = apiRoundTrip(ctx, c.hc, c.base, call, token, out)
	c.cfg.Metrics.observe(call.method, errcodeLabel(err), time.Since(start))
	var notSent *NotSentError
	return token, !errors.As(err, &notSent), err
}

// apiRoundTrip sends call once with token (none when empty) and decodes the
// answer. Errors name call.method and never contain token.
func apiRoundTrip(ctx context.Context, hc *http.Client, base string, call apiCall, token string, out any) error {
	q := url.Values{}
	for k, v := range call.query {
		q[k] = v
	}
	if token != "" {
		q.Set("access_token", token)
	}
	target := base + "/" + call.path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	var body io.Reader
	if call.body != nil {
		body = bytes.NewReader(call.body)
	}
	req, err := http.NewRequestWithContext(ctx, call.httpMethod, target, body)
	if err != nil {
		return fmt.Errorf("wechat %s: build request: %w", call.method, apiRedact(err, token))
	}
	if call.contentType != "" {
		req.Header.Set("Content-Type", call.contentType)
	}
	req.Header.Set("Accept", "application/json")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wechat %s: %w", call.method, &NotSentError{Err: err})
	}
	w := newWriteTrace(hc)
	req = req.WithContext(httptrace.WithClientTrace(ctx, w.trace()))
	resp, err := hc.Do(req)
	if err != nil {
		err = apiRedact(err, token)
		if w.notSent(err) {
			return fmt.Errorf("wechat %s: %w", call.method, &NotSentError{Err: err})
		}
		return fmt.Errorf("wechat %s: %w", call.method, sentError{err})
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, apiMaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("wechat %s: read response: %w", call.method, sentError{apiRedact(err, token)})
	}
	if resp.StatusCode != http.StatusOK {
		return &HTTPStatusError{Method: call.method, StatusCode: resp.StatusCode}
	}
	if len(raw) > apiMaxResponseBytes {
		return fmt.Errorf("wechat %s: %w: body over %d bytes", call.method, ErrMalformedResponse, apiMaxResponseBytes)
	}
	// The body is never quoted in errors: it may hold a token.
	var status struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(raw, &status); err != nil {
		return fmt.Errorf("wechat %s: %w: %v", call.method, ErrMalformedResponse, err)
	}
	if status.ErrCode != 0 {
		msg := status.ErrMsg
		if token != "" {
			msg = strings.ReplaceAll(msg, token, "REDACTED")
		}
		return &APIError{Method: call.method, ErrCode: status.ErrCode, ErrMsg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("wechat %s: %w: %v", call.method, ErrMalformedResponse, err)
		}
	}
	return nil
}

// writeTrace follows one request through the HTTP transport to tell whether
// it was completely written before the transport failed.
type writeTrace struct {
	// traced: the transport is net/http's, which reports the write; a
	// custom RoundTripper may not, and then only a dial error proves that
	// nothing was sent.
	traced bool
	// wrote: the whole request, body included, went out on a connection.
	wrote atomic.Bool
}

func newWriteTrace(hc *http.Client) *writeTrace {
	_, std := hc.Transport.(*http.Transport)
	return &writeTrace{traced: hc.Transport == nil || std}
}

func (w *writeTrace) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				w.wrote.Store(true)
			}
		},
	}
}

// notSent reports whether the transport error err came before any request
// was completely written: dial, DNS, TLS handshake, a context that ended
// while waiting for a connection. A request cut off halfway carries an
// incomplete body, which no server acts on.
func (w *writeTrace) notSent(err error) bool {
	if w.traced {
		return !w.wrote.Load()
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// apiRedact removes the token from a transport error. *url.Error prints the
// request URL, which carries access_token in its query; it is rebuilt with
// the token replaced so that errors.Is/As still see the cause.
func apiRedact(err error, token string) error {
	if token == "" {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: strings.ReplaceAll(ue.URL, token, "REDACTED"), Err: ue.Err}
	}
	return err
}

func apiSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// apiJSON encodes v without HTML escaping: custom/send shows the text as
// sent, and a feedback link's "&" must not become "\u0026".
func apiJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
