package tucao

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults and limits of the Tucao API.
const (
	DefaultBaseURL           = "https://txc.qq.com"
	DefaultRequestsPerMinute = 100 // the service's budget per product
	DefaultMaxRetries        = 4
	DefaultTimeout           = 15 * time.Second
	MaxCount                 = 100 // posts per page the service allows
)

const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 30 * time.Second
	// rateLimitedPause is the least a client waits after a rate-limit
	// answer without Retry-After: another process spent the budget, and
	// retrying at once would only spend more of it.
	rateLimitedPause = 5 * time.Second
	// maxBody bounds what is read from one answer; 100 posts with their
	// replies are far below it.
	maxBody = 32 << 20
	// maxErrorText bounds the part of a non-JSON error body kept in an
	// APIError.
	maxErrorText = 200
	userAgent    = "kefu-tucao/1"
)

// Client reads one product's posts. It is safe for concurrent use.
type Client struct {
	cfg     Config
	base    *url.URL
	limiter Limiter
	skew    skewTracker
}

// New validates cfg, fills in defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new tucao client: %w", err)
	}
	base, _ := url.Parse(cfg.BaseURL) // checked by Validate
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	limiter := cfg.Limiter
	if limiter == nil {
		limiter = NewWindowLimiter(cfg.RequestsPerMinute, cfg.Clock)
	}
	cfg.HTTPClient = sameOriginRedirects(cfg.HTTPClient)
	return &Client{cfg: cfg, base: base, limiter: limiter}, nil
}

// maxRedirects is net/http's own limit, kept when the caller's client has
// no CheckRedirect of its own.
const maxRedirects = 10

// sameOriginRedirects returns a copy of hc that follows a redirect only to
// the scheme and host of the original request. Every request carries
// Signature and Timestamp, a credential the service accepts for minutes,
// and http.Client copies such custom headers to the redirected request
// whatever its host (it strips only Authorization, Cookie and their kin).
// Stripping them and following would only earn a 401 from the other host,
// so a redirect elsewhere is refused outright: the answer to it is a
// configuration error (BaseURL should name the final host), not something
// to work around. The copy leaves the caller's client as it was.
func sameOriginRedirects(hc *http.Client) *http.Client {
	wrapped := *hc
	callers := hc.CheckRedirect
	wrapped.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		from := via[0].URL
		if req.URL.Scheme != from.Scheme || !strings.EqualFold(req.URL.Host, from.Host) {
			return fmt.Errorf("%w: %s://%s answered with a redirect to %s://%s", ErrRedirect, from.Scheme, from.Host, req.URL.Scheme, req.URL.Host)
		}
		if callers != nil {
			return callers(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &wrapped
}
