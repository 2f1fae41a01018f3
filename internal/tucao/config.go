package tucao

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Config configures a Client. The zero values of the optional fields are
// replaced by defaults in New.
type Config struct {
	// BaseURL is the API's scheme and host, optionally with a path prefix
	// (a proxy); default DefaultBaseURL.
	BaseURL string
	// ProductID is the product's numeric id (required).
	ProductID string
	// Secret is the product's private key (required). It only ever feeds
	// the signature: it is never logged, printed or put in an error.
	Secret string
	// HTTPClient sends the requests; default a client with a 15 s timeout.
	// New uses a copy of it whose redirect policy refuses to leave the
	// request's scheme and host (see ErrRedirect); the caller's client is
	// not changed, and its own CheckRedirect still decides the redirects
	// that stay.
	HTTPClient *http.Client
	// RequestsPerMinute is the budget of the limiter New creates when
	// Limiter is nil; default 100, the service's limit per product.
	RequestsPerMinute int
	// MaxRetries is how often a retryable failure is retried, with
	// exponential backoff and jitter; default 4, negative for none.
	MaxRetries int
	// Clock drives timestamps, the limiter and the backoff sleeps; default
	// the system clock.
	Clock Clock
	// Limiter, when set, replaces the client's own limiter, so that several
	// clients of one product in a process (a poller and a backfill) share
	// one budget. RequestsPerMinute is then ignored.
	Limiter Limiter
	// OnClockSkew, when set, is called each time the client changes the
	// correction it applies to its timestamps (see ClockSkew), with the new
	// skew: server clock minus local clock. Callers warn when its absolute
	// value exceeds SkewWarning. It runs on the requesting goroutine and
	// must not block.
	OnClockSkew func(skew time.Duration)
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if c.RequestsPerMinute == 0 {
		c.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.Clock == nil {
		c.Clock = SystemClock()
	}
}

// Validate reports every field that is missing or invalid, by name.
func (c Config) Validate() error {
	var errs []error
	if c.ProductID == "" {
		errs = append(errs, errors.New("tucao config: ProductID is required"))
	} else if !isDigits(c.ProductID) {
		errs = append(errs, errors.New("tucao config: ProductID must be decimal digits"))
	}
	if c.Secret == "" {
		errs = append(errs, errors.New("tucao config: Secret is required"))
	}
	if c.BaseURL != "" {
		if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("tucao config: BaseURL %q must be an absolute http(s) URL", c.BaseURL))
		} else if u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("tucao config: BaseURL %q must not have a query or fragment", c.BaseURL))
		}
	}
	if c.RequestsPerMinute < 0 {
		errs = append(errs, fmt.Errorf("tucao config: RequestsPerMinute must not be negative, got %d", c.RequestsPerMinute))
	}
	return errors.Join(errs...)
}

// String describes the configuration without the secret, so that printing
// a Config by mistake does not leak it.
func (c Config) String() string {
	secret := "unset"
	if c.Secret != "" {
		secret = "set"
	}
	return fmt.Sprintf("tucao.Config{BaseURL: %q, ProductID: %q, Secret: %s, RequestsPerMinute: %d, MaxRetries: %d}",
		c.BaseURL, c.ProductID, secret, c.RequestsPerMinute, c.MaxRetries)
}

// GoString keeps %#v from printing the secret too.
func (c Config) GoString() string { return c.String() }

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
