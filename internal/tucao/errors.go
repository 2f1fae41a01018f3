package tucao

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Values of the body's "status" field. Tucao's API documentation names only 0 (success);
// the others are the codes kefu's fake server (package tucaotest) answers
// with, each mirroring an HTTP status. The client decides by the HTTP status
// first and needs only StatusRateLimited from this list, so an unknown code
// from the real service is still handled by its HTTP status.
const (
	StatusOK               = 0
	StatusInvalidParameter = 40001 // count out of 1..100, bad max_id, from or to (HTTP 400)
	StatusMissingAuth      = 40101 // Timestamp or Signature header missing or not well formed (HTTP 401)
	StatusStaleTimestamp   = 40102 // Timestamp too far from the server's clock (HTTP 401)
	StatusBadSignature     = 40103 // Signature is not md5(Timestamp + secret) (HTTP 401)
	StatusUnknownProduct   = 40401 // no such product id (HTTP 404)
	StatusRateLimited      = 42901 // more than 100 requests in a minute for the product (HTTP 429)
	StatusInternalError    = 50001 // server fault (HTTP 500)
)

var (
	// ErrRateLimited is wrapped by an *APIError when the service refused a
	// request for exceeding the product's request budget.
	ErrRateLimited = errors.New("tucao: rate limited")
	// ErrMalformedResponse is wrapped when a 2xx body is not the JSON the
	// API documents (truncated, not JSON, a post without a valid id, a
	// pagination that does not advance).
	ErrMalformedResponse = errors.New("tucao: malformed response")
	// ErrTransport is wrapped when the request got no HTTP answer:
	// connection errors and timeouts.
	ErrTransport = errors.New("tucao: transport error")
	// ErrRedirect is wrapped when the service (or a proxy in front of it)
	// redirected a request to another scheme or host. The client does not
	// follow, so the request's Signature never reaches that host; the
	// error is permanent, since BaseURL names the wrong host.
	ErrRedirect = errors.New("tucao: redirect to another host refused")
)

// APIError is an answer from the service that reports a failure: a non-zero
// "status" in the body or a non-2xx HTTP status.
type APIError struct {
	Status     int    // the body's "status"; 0 when the body had none
	Message    string // the body's "message", or the start of a non-JSON body
	HTTPStatus int
	// RetryAfter is the server's Retry-After hint, 0 when it gave none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.HTTPStatus)
	}
	return fmt.Sprintf("tucao api: http %d, status %d: %s", e.HTTPStatus, e.Status, msg)
}

// Unwrap makes errors.Is(err, ErrRateLimited) hold for rate-limit answers.
func (e *APIError) Unwrap() error {
	if e.RateLimited() {
		return ErrRateLimited
	}
	return nil
}

// RateLimited reports whether the service refused the request for the
// request budget.
func (e *APIError) RateLimited() bool {
	return e.HTTPStatus == http.StatusTooManyRequests || e.Status == StatusRateLimited
}

// Retryable reports whether the same request may succeed later: server
// errors and rate limiting. Signature errors (401/403) and every other 4xx
// answer are permanent, as is a non-zero status in a 2xx answer, which the
// service uses for requests it understood and refused.
func (e *APIError) Retryable() bool {
	return e.RateLimited() || e.HTTPStatus >= 500
}

// IsRetryable reports whether err is a failure worth retrying later:
// a retryable *APIError, a transport error or timeout, or a malformed body.
// Cancellation by the caller is not.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if apiErr, ok := errors.AsType[*APIError](err); ok {
		return apiErr.Retryable()
	}
	return errors.Is(err, ErrTransport) || errors.Is(err, ErrMalformedResponse)
}
