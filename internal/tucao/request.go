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
