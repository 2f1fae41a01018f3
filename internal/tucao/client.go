package tucao

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

// ListOptions selects posts. The zero value asks for the newest page of the
// server's default size.
type ListOptions struct {
	// Count is the page size, 1..100; 0 leaves it to the server (20).
	Count int
	// MaxID asks for posts whose id is at most MaxID (older pages).
	MaxID string
	// From and To (YYYYMMDD, Asia/Shanghai) limit the posts to a creation
	// window, as Tucao reads them: From is the first day, To the day after
	// the last (exclusive; the documentation's from=20180123&to=20180124 is January
	// 23rd alone). Either may be empty. Callers that take inclusive days
	// from a person translate with DayAfter.
	From, To string
}

// DayAfter returns the YYYYMMDD day after day: the exclusive To of a
// window whose last day is day.
func DayAfter(day string) (string, error) {
	t, err := ParseDate(day)
	if err != nil {
		return "", err
	}
	return FormatDate(t.AddDate(0, 0, 1)), nil
}

func (o ListOptions) query() (url.Values, error) {
	q := url.Values{}
	if o.Count < 0 || o.Count > MaxCount {
		return nil, fmt.Errorf("count %d out of range 1..%d", o.Count, MaxCount)
	}
	if o.Count > 0 {
		q.Set("count", strconv.Itoa(o.Count))
	}
	if o.MaxID != "" {
		if _, err := parseID(o.MaxID); err != nil {
			return nil, fmt.Errorf("max_id: %w", err)
		}
		q.Set("max_id", o.MaxID)
	}
	var from, to time.Time
	var err error
	if o.From != "" {
		if from, err = ParseDate(o.From); err != nil {
			return nil, err
		}
		q.Set("from", o.From)
	}
	if o.To != "" {
		if to, err = ParseDate(o.To); err != nil {
			return nil, err
		}
		q.Set("to", o.To)
	}
	if o.From != "" && o.To != "" && !to.After(from) {
		return nil, fmt.Errorf("to %s must be after from %s (to is exclusive: the day after the last day)", o.To, o.From)
	}
	return q, nil
}

func (c *Client) postsPath() string {
	return c.base.Path + "/api/v1/" + c.cfg.ProductID + "/posts"
}

// ListPosts fetches the first page matching opt.
func (c *Client) ListPosts(ctx context.Context, opt ListOptions) (*Page, error) {
	q, err := opt.query()
	if err != nil {
		return nil, fmt.Errorf("list tucao posts: invalid options: %w", err)
	}
	u := *c.base
	u.Path = c.postsPath()
	u.RawQuery = q.Encode()
	page, err := c.get(ctx, &u)
	if err != nil {
		return nil, fmt.Errorf("list tucao posts: %w", err)
	}
	return page, nil
}

// NextPage fetches the page a previous answer's NextPageURL points to,
// signed afresh. The URL is normally a path ("/api/v1/1234/posts?max_id=…")
// and is resolved against BaseURL, prefix included; an absolute URL is
// accepted only for BaseURL's own scheme and host, so a forged answer cannot
// send our signed requests elsewhere.
func (c *Client) NextPage(ctx context.Context, nextPageURL string) (*Page, error) {
	u, err := c.resolve(nextPageURL)
	if err != nil {
		return nil, fmt.Errorf("next tucao page: %w", err)
	}
	page, err := c.get(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("next tucao page: %w", err)
	}
	return page, nil
}

func (c *Client) resolve(next string) (*url.URL, error) {
	if next == "" {
		return nil, errors.New("empty next_page_url")
	}
	ref, err := url.Parse(next)
	if err != nil {
		return nil, fmt.Errorf("%w: next_page_url %q: %w", ErrMalformedResponse, next, err)
	}
	u := *c.base
	switch {
	case ref.IsAbs():
		if ref.Scheme != c.base.Scheme || ref.Host != c.base.Host {
			return nil, fmt.Errorf("%w: next_page_url %q leaves %s", ErrMalformedResponse, next, c.base.Host)
		}
		u.Path = ref.Path
	case ref.Host != "":
		return nil, fmt.Errorf("%w: next_page_url %q names another host", ErrMalformedResponse, next)
	case strings.HasPrefix(ref.Path, "/"):
		u.Path = c.base.Path + ref.Path
		if c.base.Path != "" && strings.HasPrefix(ref.Path, c.base.Path+"/") {
			u.Path = ref.Path // the server already knows the prefix
		}
	default:
		return nil, fmt.Errorf("%w: next_page_url %q is not a path", ErrMalformedResponse, next)
	}
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	return &u, nil
}

// ErrMorePages is what Walk returns when it stopped at its page budget with
// older pages still to read.
var ErrMorePages = errors.New("page budget spent with more pages to read")

// Iterate calls fn for each post matching opt, newest first, following
// next_page_url until fn says stop, fn fails or there is no next page.
//
// Two defences keep a long backfill honest: the page size and the from/to
// window of opt are carried into a next_page_url that does not repeat them,
// and a post already seen on the previous page (a server that treats max_id
// as inclusive of the last post) is not passed to fn twice. A
// next_page_url that was already followed stops the walk with
// ErrMalformedResponse instead of looping for ever.
func (c *Client) Iterate(ctx context.Context, opt ListOptions, fn func(Post) (more bool, err error)) error {
	_, err := c.Walk(ctx, opt, 0, fn)
	return err
}

// Walk is Iterate that reads at most maxPages pages (0: no limit) and says
// how many requests it made. When the budget is spent while older pages
// remain it returns ErrMorePages, so the caller can resume later with
// MaxID set to the last post fn saw.
func (c *Client) Walk(ctx context.Context, opt ListOptions, maxPages int, fn func(Post) (more bool, err error)) (pages int, err error) {
	if maxPages < 0 {
		return 0, fmt.Errorf("iterate tucao posts: page budget %d is negative", maxPages)
	}
	pages = 1
	page, err := c.ListPosts(ctx, opt)
	if err != nil {
		return pages, err
	}
	followed := make(map[string]bool)
	var previous map[string]bool
	for {
		current := make(map[string]bool, len(page.Posts))
		for _, p := range page.Posts {
			if previous[p.ID] || current[p.ID] {
				continue
			}
			current[p.ID] = true
			more, err := fn(p)
			if err != nil {
				return pages, fmt.Errorf("iterate tucao posts: post %s: %w", p.ID, err)
			}
			if !more {
				return pages, nil
			}
		}
		if page.NextPageURL == "" {
			return pages, nil
		}
		if maxPages > 0 && pages >= maxPages {
			return pages, ErrMorePages
		}
		next, err := carryOptions(page.NextPageURL, opt)
		if err != nil {
			return pages, fmt.Errorf("iterate tucao posts: %w", err)
		}
		if followed[next] {
			return pages, fmt.Errorf("iterate tucao posts: %w: next_page_url %q repeats", ErrMalformedResponse, next)
		}
		followed[next] = true
		previous = current
		pages++
		if page, err = c.NextPage(ctx, next); err != nil {
			return pages, fmt.Errorf("iterate tucao posts: %w", err)
		}
	}
}

// carryOptions adds opt's count, from and to to a next_page_url that lacks
// them.
func carryOptions(next string, opt ListOptions) (string, error) {
	u, err := url.Parse(next)
	if err != nil {
		return "", fmt.Errorf("%w: next_page_url %q: %w", ErrMalformedResponse, next, err)
	}
	q := u.Query()
	changed := false
	add := func(key, value string) {
		if value != "" && !q.Has(key) {
			q.Set(key, value)
			changed = true
		}
	}
	if opt.Count > 0 {
		add("count", strconv.Itoa(opt.Count))
	}
	add("from", opt.From)
	add("to", opt.To)
	if !changed {
		return next, nil
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// get performs the request with retries.
func (c *Client) get(ctx context.Context, u *url.URL) (*Page, error) {
	attempts := 1 + max(c.cfg.MaxRetries, 0)
	var lastErr error
	resigned := false
	for attempt := range attempts {
		if attempt > 0 {
			if err := c.sleep(ctx, c.backoff(attempt, lastErr)); err != nil {
				return nil, fmt.Errorf("%w (after %d attempts, last error: %w)", err, attempt, lastErr)
			}
		}
		if err := c.limiter.Wait(ctx); err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (after %d attempts, last error: %w)", err, attempt, lastErr)
			}
			return nil, err
		}
		page, skewed, err := c.do(ctx, u)
		if err != nil && skewed && !resigned && isUnauthorized(err) {
			// The answer showed our clock off: sign again with the
			// corrected time, at once and once.
			resigned = true
			if err = c.limiter.Wait(ctx); err == nil {
				page, _, err = c.do(ctx, u)
			}
		}
		if err == nil {
			return page, nil
		}
		lastErr = err
		if ctxErr := ctx.Err(); ctxErr != nil {
			if errors.Is(err, ctxErr) {
				return nil, err
			}
			return nil, fmt.Errorf("%w (last error: %w)", ctxErr, err)
		}
		if !IsRetryable(err) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("giving up after %d attempts: %w", attempts, lastErr)
}

// backoff returns the pause before the given retry (1 for the first):
// exponential with "equal jitter" (half fixed, half random) so that
// replicas that failed together do not retry together, and at least what a
// rate-limit answer asks for.
func (c *Client) backoff(attempt int, lastErr error) time.Duration {
	d := backoffBase << min(attempt-1, 16)
	d = min(d, backoffMax)
	d = d/2 + rand.N(d/2+1)
	if apiErr, ok := errors.AsType[*APIError](lastErr); ok && apiErr.RateLimited() {
		floor := apiErr.RetryAfter
		if floor <= 0 {
			floor = rateLimitedPause
		}
		d = max(d, floor)
	}
	return d
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.cfg.Clock.After(d):
		return nil
	}
}

// do sends one signed request and decodes the answer. skewed reports that
// the answer's Date header changed the clock correction.
func (c *Client) do(ctx context.Context, u *url.URL) (page *Page, skewed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, fmt.Errorf("build request: %w", err)
	}
	sent := c.cfg.Clock.Now()
	ts := strconv.FormatInt(sent.Add(c.skew.get()).Unix(), 10)
	req.Header.Set("Timestamp", ts)
	req.Header.Set("Signature", Sign(ts, c.cfg.Secret))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		if errors.Is(err, ErrRedirect) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	defer resp.Body.Close()
	if skew, changed := c.skew.observe(resp.Header.Get("Date"), sent, c.cfg.Clock.Now()); changed {
		skewed = true
		if c.cfg.OnClockSkew != nil {
			c.cfg.OnClockSkew(skew)
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, skewed, fmt.Errorf("%w: read body: %w", ErrTransport, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, skewed, httpError(resp, body)
	}
	if len(body) > maxBody {
		return nil, skewed, fmt.Errorf("%w: body larger than %d bytes", ErrMalformedResponse, maxBody)
	}
	page, err = decodePage(body)
	return page, skewed, err
}

// isUnauthorized reports an answer that refused the request's signature
// or timestamp.
func isUnauthorized(err error) bool {
	apiErr, ok := errors.AsType[*APIError](err)
	return ok && apiErr.HTTPStatus == http.StatusUnauthorized
}

// httpError builds the APIError of a non-2xx answer, taking status and
// message from a JSON body when there is one.
func httpError(resp *http.Response, body []byte) *APIError {
	apiErr := &APIError{HTTPStatus: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	var w wirePage
	if json.Unmarshal(body, &w) == nil && (len(w.Status) > 0 || len(w.Message) > 0) {
		_ = decodeOptional(w.Status, decodeInt, &apiErr.Status)
		_ = decodeOptional(w.Message, decodeString, &apiErr.Message)
		return apiErr
	}
	apiErr.Message = truncateText(strings.TrimSpace(string(body)), maxErrorText)
	return apiErr
}

// retryAfter reads a Retry-After header given in seconds; dates are rare
// enough in APIs to ignore.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(min(n, 3600)) * time.Second
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
