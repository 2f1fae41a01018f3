package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/kefu-io/kefu/internal/wechat"
)

func TestErrorClassification(t *testing.T) {
	api := func(code int) error {
		return fmt.Errorf("send: %w", &wechat.APIError{Method: "custom_send", ErrCode: code, ErrMsg: "x"})
	}
	status := func(code int) error { return &wechat.HTTPStatusError{Method: "getwaitcase", StatusCode: code} }
	cases := []struct {
		name                        string
		err                         error
		token, permanent, retryable bool
	}{
		{"40001 invalid credential is a token error", api(40001), true, false, true},
		{"42001 expired token is a token error", api(42001), true, false, true},
		{"40014 invalid access token is a token error", api(40014), true, false, true},
		{"-1 system busy is retryable", api(-1), false, false, true},
		{"45009 daily quota is retryable later", api(45009), false, false, true},
		{"45011 frequency limit is retryable later", api(45011), false, false, true},
		{"45015 outside the 48-hour window is permanent", api(45015), false, true, false},
		{"45047 reply limit is permanent", api(45047), false, true, false},
		{"65400 first kf code is permanent", api(65400), false, true, false},
		{"65414 last kf code is permanent", api(65414), false, true, false},
		{"40003 invalid openid is permanent", api(40003), false, true, false},
		{"43004 unsubscribed customer is permanent", api(43004), false, true, false},
		{"HTTP 503 is retryable", status(503), false, false, true},
		{"HTTP 429 is retryable", status(429), false, false, true},
		{"HTTP 403 is permanent", status(403), false, true, false},
		{"malformed response is retryable", fmt.Errorf("x: %w", wechat.ErrMalformedResponse), false, false, true},
		{"invalid request is permanent", fmt.Errorf("x: %w", wechat.ErrInvalidRequest), false, true, false},
		{"deadline exceeded is retryable", fmt.Errorf("x: %w", context.DeadlineExceeded), false, false, true},
		{"cancelled is neither", fmt.Errorf("x: %w", context.Canceled), false, false, false},
		{"network error is retryable", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false, false, true},
		{"nil is nothing", nil, false, false, false},
		{"an unknown error is neither", errors.New("boom"), false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := wechat.IsTokenError(tc.err); got != tc.token {
				t.Errorf("IsTokenError = %v, want %v", got, tc.token)
			}
			if got := wechat.IsPermanent(tc.err); got != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tc.permanent)
			}
			if got := wechat.IsRetryable(tc.err); got != tc.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tc.retryable)
			}
		})
	}
}

func TestAPIErrorNamesMethodCodeAndMessage(t *testing.T) {
	err := &wechat.APIError{Method: "getwaitcase", ErrCode: 65400, ErrMsg: "api unavailable rid: 1"}
	if got, want := err.Error(), "wechat getwaitcase: errcode 65400: api unavailable rid: 1"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestClassifyAndNotSent(t *testing.T) {
	api := func(code int) error { return &wechat.APIError{Method: "custom_send", ErrCode: code} }
	notSent := func(err error) error { return fmt.Errorf("wechat custom_send: %w", &wechat.NotSentError{Err: err}) }
	cases := []struct {
		name    string
		err     error
		want    wechat.Verdict
		notSent bool
		reason  string
	}{
		{"success", nil, wechat.VerdictDone, false, ""},
		{"-1 is not carried out", api(-1), wechat.VerdictRetry, true, ""},
		{"45011 is not carried out", api(45011), wechat.VerdictRetry, true, ""},
		{"40001 is not carried out", api(40001), wechat.VerdictRetry, true, ""},
		{"HTTP 429 is not carried out", &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 429}, wechat.VerdictRetry, true, ""},
		{"45015 is refused", api(45015), wechat.VerdictRefused, false, ""},
		{"a token fetch refused for good is refused", notSent(api(40125)), wechat.VerdictRefused, true, ""},
		{"a KV read error before sending", notSent(errors.New("nats: timeout")), wechat.VerdictRetry, true, ""},
		{"a cancelled context before sending", notSent(context.Canceled), wechat.VerdictRetry, true, ""},
		{"HTTP 502 may have been passed on", &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 502}, wechat.VerdictUnknown, false, wechat.UnknownHTTPStatus},
		{"a malformed 200", fmt.Errorf("x: %w", wechat.ErrMalformedResponse), wechat.VerdictUnknown, false, wechat.UnknownMalformed},
		{"a deadline after sending", fmt.Errorf("x: %w", context.DeadlineExceeded), wechat.VerdictUnknown, false, wechat.UnknownTimeout},
		{"a cancel after sending", fmt.Errorf("x: %w", context.Canceled), wechat.VerdictUnknown, false, wechat.UnknownCancelled},
		{"an unplaced error", errors.New("boom"), wechat.VerdictUnknown, false, wechat.UnknownOther},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := wechat.Classify(tc.err); got != tc.want {
				t.Errorf("Classify = %v, want %v", got, tc.want)
			}
			if got := wechat.NotSent(tc.err); got != tc.notSent {
				t.Errorf("NotSent = %v, want %v", got, tc.notSent)
			}
			if tc.reason != "" {
				if got := wechat.UnknownReason(tc.err); got != tc.reason {
					t.Errorf("UnknownReason = %q, want %q", got, tc.reason)
				}
			}
		})
	}
}
