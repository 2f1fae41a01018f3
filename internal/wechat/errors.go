package wechat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// Sentinel errors of the API client.
var (
	// ErrMalformedResponse means WeChat answered with a body that is not the
	// JSON we expect (HTML error page, truncated body, wrong types). It is
	// treated as transient: the gateway in front of the API produces such
	// bodies when it is overloaded.
	ErrMalformedResponse = errors.New("wechat: malformed API response")
	// ErrInvalidRequest means the client refused to send a request because an
	// argument is missing or malformed (empty openid, kf_account without '@').
	// Retrying cannot help.
	ErrInvalidRequest = errors.New("wechat: invalid API request")
)

// Error codes that change the client's behaviour. The full list is WeChat's
// global return code page; 65400–65417 are the 多客服 codes (65400 API not
// enabled, 65401 no such agent, 65413 no session for the customer, 65414
// customer served by another agent, 65415 agent offline, …).
const (
	ErrCodeSystemBusy         = -1    // 系统繁忙: retried with backoff
	ErrCodeInvalidCredential  = 40001 // access_token invalid or not the latest
	ErrCodeInvalidOpenID      = 40003
	ErrCodeInvalidAccessToken = 40014
	ErrCodeAccessTokenExpired = 42001
	ErrCodeDailyQuotaExceeded = 45009 // 接口调用超过限额 (daily quota)
	ErrCodeFrequencyLimit     = 45011 // API 调用太频繁 (per-minute limit)
	ErrCodeReplyWindowExpired = 45015 // outside the 48-hour customer-service window
	ErrCodeReplyCountExceeded = 45047 // too many messages to one customer without an answer
	ErrCodeKfAPIUnavailable   = 65400 // account not upgraded to the new 多客服
)

// APIError is an answer from WeChat carrying a non-zero errcode. Method is the
// API name used in metrics ("getwaitcase", "custom_send", …). ErrMsg is
// WeChat's text (with its "rid:" request id), kept because several codes, -1
// above all, are only diagnosable from it. The access token never appears in
// it: the client removes it should WeChat ever echo it.
type APIError struct {
	Method  string
	ErrCode int
	ErrMsg  string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("wechat %s: errcode %d: %s", e.Method, e.ErrCode, e.ErrMsg)
}

// HTTPStatusError is an answer with an HTTP status other than 200, which the
// WeChat API itself never sends: it comes from a gateway or proxy.
type HTTPStatusError struct {
	Method     string
	StatusCode int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("wechat %s: unexpected HTTP status %d %s", e.Method, e.StatusCode, http.StatusText(e.StatusCode))
}

// errCodeOf returns the errcode of an *APIError in err's chain.
func errCodeOf(err error) (int, bool) {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrCode, true
	}
	return 0, false
}

// IsTokenError reports whether err says the access token was rejected
// (40001, 40014, 42001). The client reacts by invalidating the token,
// refreshing it once and retrying; callers only see such an error when the
// fresh token was rejected too.
func IsTokenError(err error) bool {
	code, ok := errCodeOf(err)
	return ok && isTokenErrCode(code)
}

func isTokenErrCode(code int) bool {
	switch code {
	case ErrCodeInvalidCredential, ErrCodeInvalidAccessToken, ErrCodeAccessTokenExpired:
		return true
	}
	return false
}

// isQuotaErrCode reports the rate-limit codes: a later attempt may succeed,
// but not within the seconds a backoff waits, so the client does not retry
// them itself and leaves the delay to its caller (a delayed redelivery).
func isQuotaErrCode(code int) bool {
	return code == ErrCodeDailyQuotaExceeded || code == ErrCodeFrequencyLimit
}

// IsPermanent reports whether retrying the same request cannot succeed, so a
// caller should give up at once (for the notifier: a kefu.notify.failed
// event, no redelivery). Permanent are:
//
//   - every positive errcode except the token codes (IsTokenError) and the
//     quota codes 45009 and 45011. WeChat's positive codes describe the
//     request or the account: 40003 invalid openid, 43004 customer not
//     subscribed, 45015 outside the 48-hour window, 45047 reply limit, 48001
//     API not authorised, 65400–65414 多客服 errors (agent missing, offline,
//     customer already in a session, …), 40013/40125/40164 wrong appid,
//     secret or IP whitelist. A human has to change something first.
//   - an HTTP status 4xx other than 408 and 429 (wrong base URL, proxy
//     refusing us),
//   - ErrInvalidRequest (the client refused the arguments).
//
// -1 (system busy) is not permanent; an account not yet upgraded to the new
// 多客服 answers -1 for ever (docs/operations.md, "Notifications and access
// tokens"), which the retry budget bounds.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrInvalidRequest) {
		return true
	}
	if code, ok := errCodeOf(err); ok {
		return code > 0 && !isTokenErrCode(code) && !isQuotaErrCode(code)
	}
	var statusErr *HTTPStatusError
	if errors.As(err, &statusErr) {
		s := statusErr.StatusCode
		return s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests
	}
	return false
}

// IsRetryable reports whether a later attempt of the same request may
// succeed: errcode -1, the quota codes 45009/45011, token errors (a later
// attempt gets a fresh token), HTTP 5xx, 408 and 429, malformed bodies,
// network errors and timeouts, including an expired context deadline.
// A cancelled context is not retryable: the caller gave up.
//
// The client already retries some of these itself (see Client); when one
// reaches the caller the in-call budget is spent, so the caller should retry
// later rather than at once.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrInvalidRequest) {
		return false
	}
	if code, ok := errCodeOf(err); ok {
		return code == ErrCodeSystemBusy || isTokenErrCode(code) || isQuotaErrCode(code)
	}
	var statusErr *HTTPStatusError
	if errors.As(err, &statusErr) {
		s := statusErr.StatusCode
		return s >= 500 || s == http.StatusRequestTimeout || s == http.StatusTooManyRequests
	}
	if errors.Is(err, ErrMalformedResponse) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// NotSentError wraps the error of a request that never reached WeChat: the
// access token could not be had (token endpoint or kefu_token bucket
// unreachable), the client-side rate limit's wait outlasted the context, the
// connection or its TLS handshake failed, or the context ended before the
// request was completely written. Repeating such a request cannot do
// anything twice.
type NotSentError struct {
	Err error
}

func (e *NotSentError) Error() string { return e.Err.Error() }
func (e *NotSentError) Unwrap() error { return e.Err }

// NotSent is true: see NotSent.
func (e *NotSentError) NotSent() bool { return true }

// NotSent reports whether err certainly left nothing done at WeChat: the
// request never left kefu (a *NotSentError in the chain), or WeChat answered
// that it did not carry it out — errcode -1 (system busy), the quota codes
// 45009/45011, a token error, or HTTP 429 from its gateway. Any other
// errcode is a refusal (see IsPermanent), which also leaves nothing done.
// Timeouts, resets, 5xx and malformed answers after the request was written
// are not NotSent: WeChat may have carried the request out.
func NotSent(err error) bool {
	if err == nil {
		return false
	}
	var ns interface{ NotSent() bool }
	if errors.As(err, &ns) && ns.NotSent() {
		return true
	}
	// No connection, nothing sent, whoever made the error.
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	if code, ok := errCodeOf(err); ok {
		return code == ErrCodeSystemBusy || isTokenErrCode(code) || isQuotaErrCode(code)
	}
	var statusErr *HTTPStatusError
	return errors.As(err, &statusErr) && statusErr.StatusCode == http.StatusTooManyRequests
}

// Verdict is what a failed request means for a caller that must not repeat
// an effect (a message to a customer).
type Verdict int

// Verdicts of Classify.
const (
	// VerdictDone: no error, WeChat carried the request out.
	VerdictDone Verdict = iota
	// VerdictRefused: WeChat answered no (IsPermanent): nothing was done and
	// repeating cannot help.
	VerdictRefused
	// VerdictRetry: nothing was done (NotSent); a later attempt may succeed
	// and cannot duplicate anything.
	VerdictRetry
	// VerdictUnknown: the request may have been carried out; repeating it
	// could do it twice. UnknownReason says why.
	VerdictUnknown
)

// Classify is the one decision the notifier and queuecare take on a send
// error.
func Classify(err error) Verdict {
	switch {
	case err == nil:
		return VerdictDone
	case IsPermanent(err):
		return VerdictRefused
	case NotSent(err):
		return VerdictRetry
	}
	return VerdictUnknown
}

// Reasons for an unknown outcome: the closed label set of
// kefu_wechat_api_unknown_outcome_total and the word after "unknown
// outcome: " in a kefu.notify.failed errmsg.
const (
	// UnknownTimeout: the deadline passed after the request was written.
	UnknownTimeout = "timeout_after_send"
	// UnknownCancelled: the caller gave up after the request was written.
	UnknownCancelled = "cancelled_after_send"
	// UnknownConnection: the connection broke after the request was written
	// (reset, EOF, unreadable answer).
	UnknownConnection = "connection_lost_after_send"
	// UnknownHTTPStatus: a gateway answered 5xx or 408; it may have passed
	// the request on.
	UnknownHTTPStatus = "http_status"
	// UnknownMalformed: HTTP 200 with a body that is not WeChat's JSON.
	UnknownMalformed = "malformed_response"
	// UnknownOther: an error the client did not produce (a Sender other
	// than *Client), or one it cannot place.
	UnknownOther = "other"
)

// UnknownReasons lists every reason UnknownReason returns.
var UnknownReasons = []string{UnknownTimeout, UnknownCancelled, UnknownConnection, UnknownHTTPStatus, UnknownMalformed, UnknownOther}

// UnknownReason names why err leaves the outcome unknown; meaningful when
// Classify(err) is VerdictUnknown.
func UnknownReason(err error) string {
	var statusErr *HTTPStatusError
	var netErr net.Error
	switch {
	case errors.As(err, &statusErr):
		return UnknownHTTPStatus
	case errors.Is(err, ErrMalformedResponse):
		return UnknownMalformed
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return UnknownTimeout
	case errors.Is(err, context.Canceled):
		return UnknownCancelled
	case errors.As(err, &sentError{}):
		return UnknownConnection
	}
	return UnknownOther
}

// sentError marks a transport error that happened after the request was
// completely written.
type sentError struct{ err error }

func (e sentError) Error() string { return e.err.Error() }
func (e sentError) Unwrap() error { return e.err }
