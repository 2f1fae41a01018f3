package kfadmin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/kefu-io/kefu/internal/wechat"
)

// maxRemoteAnswer bounds what the client reads of an answer: the largest
// document the admin API sends (a full group list with member status) is
// far smaller.
const maxRemoteAnswer = 8 << 20

// maxRemoteDetail bounds the error text shown from an answer, so that a
// server that is not kefu cannot flood the terminal.
const maxRemoteDetail = 1000

// ErrAdminTokenRefused is the answer 401: the token is missing or not the
// server's.
var ErrAdminTokenRefused = errors.New("the server refused the admin token: set KEFU_ADMIN_TOKEN to the server's admin token")

// Remote runs the commands of `kefu kf --server URL` through the admin
// HTTP API of a running kefu (the all and estimator roles serve it), so
// the machine it runs on needs neither WeChat credentials nor NATS. It
// answers the same documents as the direct backend. Build it with
// NewRemote.
type Remote struct {
	base    string // the server URL without a trailing '/'
	token   string
	timeout time.Duration
	http    *http.Client
}

// NewRemote checks cfg (see RemoteConfig) and returns a client. It
// connects to nothing.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	u, err := ValidateServerURL(cfg.Server)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, errors.New("kf --server: no admin token: set KEFU_ADMIN_TOKEN")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultServerTimeout
	}
	return &Remote{
		base:    strings.TrimSuffix(u.String(), "/"),
		token:   cfg.Token,
		timeout: timeout,
		http: &http.Client{
			Timeout: timeout,
			// A redirect would resend the token, and turn a POST into a
			// GET: the user should point --server at the final URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// URL is the server's base URL.
func (r *Remote) URL() string { return r.base }

// RemoteError is an error answer of the admin API: an RFC 9457 problem
// ({title, status, detail, errcode?, errmsg?}) or the older {error,
// errcode?, errmsg?}. ErrCode and ErrMsg are WeChat's when WeChat refused
// the call.
type RemoteError struct {
	Status  int
	Detail  string
	ErrCode *int
	ErrMsg  string
}

func (e *RemoteError) Error() string {
	msg := e.Detail
	if e.ErrCode != nil && !strings.Contains(msg, fmt.Sprintf("errcode %d", *e.ErrCode)) {
		msg += fmt.Sprintf(" (WeChat errcode %d: %s)", *e.ErrCode, e.ErrMsg)
	}
	return msg
}

// problem is the body of an error answer.
type problem struct {
	Title   string `json:"title"`
	Detail  string `json:"detail"`
	Error   string `json:"error"` // deprecated alias of detail
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// request is one call of the admin API.
type request struct {
	method, path string // path already escaped
	query        url.Values
	json         any    // JSON body, or nil
	body         []byte // a body of contentType when json is nil
	contentType  string
}

// call sends req and decodes a 2xx answer into out.
func (r *Remote) call(ctx context.Context, req request, out any) error {
	var body io.Reader
	contentType := req.contentType
	switch {
	case req.json != nil:
		b, err := json.Marshal(req.json)
		if err != nil {
			return err
		}
		body, contentType = bytes.NewReader(b), "application/json"
	case req.body != nil:
		body = bytes.NewReader(req.body)
	}
	target := r.base + req.path
	if len(req.query) > 0 {
		target += "?" + req.query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, target, body)
	if err != nil {
		return fmt.Errorf("kf --server: %w", err)
	}
	hr.Header.Set("Authorization", "Bearer "+r.token)
	hr.Header.Set("Accept", "application/json, application/problem+json")
	if contentType != "" {
		hr.Header.Set("Content-Type", contentType)
	}
	resp, err := r.http.Do(hr)
	if err != nil {
		return r.transportError(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxRemoteAnswer+1))
	if err != nil {
		return r.transportError(ctx, err)
	}
	if len(raw) > maxRemoteAnswer {
		return fmt.Errorf("kefu at %s answered %s %s with more than %d bytes", r.base, req.method, req.path, maxRemoteAnswer)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("kefu at %s answered %s %s with what is not kefu's JSON (%v): check the URL", r.base, req.method, req.path, err)
		}
		return nil
	}
	return r.answerError(req, resp, raw)
}

// answerError turns an answer that is not 2xx into one line.
func (r *Remote) answerError(req request, resp *http.Response, raw []byte) error {
	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return ErrAdminTokenRefused
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fmt.Errorf("kefu at %s redirects %s to %s: give that URL to --server", r.base, req.path, oneLineText(resp.Header.Get("Location")))
	}
	var p problem
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	isJSON := mediaType == "application/json" || mediaType == "application/problem+json"
	if isJSON && json.Unmarshal(raw, &p) == nil && (p.Detail != "" || p.Error != "" || p.Title != "") {
		detail := p.Detail
		if detail == "" {
			detail = p.Error
		}
		if detail == "" {
			detail = p.Title
		}
		switch resp.StatusCode {
		case http.StatusForbidden:
			detail = "the server refused the token for this change (" + detail + "): set KEFU_ADMIN_TOKEN to the server's admin token, not the read-only one"
		case http.StatusServiceUnavailable:
			// A setting the server lacks: it is the server's to set, not
			// this machine's.
			detail = "kefu at " + r.base + " cannot do this: " + detail
		}
		return &RemoteError{Status: resp.StatusCode, Detail: oneLineText(detail), ErrCode: p.ErrCode, ErrMsg: oneLineText(p.ErrMsg)}
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("kefu at %s does not serve %s (404): check the URL, and that the server runs the all or estimator role with KEFU_ADMIN_TOKEN set", r.base, req.path)
	}
	return fmt.Errorf("kefu at %s answered %s %s with %s and no error document: check that the URL is kefu's (a proxy in between?)", r.base, req.method, req.path, status)
}

// transportError says in one line why the server could not be reached
// and what to check.
func (r *Remote) transportError(ctx context.Context, err error) error {
	var dnsErr *net.DNSError
	var netErr net.Error
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("kf --server %s: %w", r.base, ctx.Err())
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve %s (kefu at %s): check the host name in --server or KEFU_SERVER, and your DNS or VPN", dnsErr.Name, r.base)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing answers at %s (connection refused): check the host and port, and that kefu all or kefu estimator runs there", r.base)
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidCert), errors.As(err, &verifyErr):
		return fmt.Errorf("TLS with %s failed: %s: check the server's certificate and that the host name matches it", r.base, oneLineText(err.Error()))
	case errors.As(err, &recordErr), errors.Is(err, http.ErrSchemeMismatch):
		return fmt.Errorf("TLS with %s failed: the server does not speak TLS there: use http:// or the HTTPS port", r.base)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("no answer from kefu at %s within %s: check the URL, that it is reachable from here (firewall, VPN), or raise KEFU_SERVER_TIMEOUT", r.base, r.timeout)
	}
	return fmt.Errorf("cannot reach kefu at %s: %s: check the URL and the network", r.base, oneLineText(err.Error()))
}

// oneLineText makes text from a server safe to print on one line: no
// control characters (no terminal escapes, no line breaks), bounded.
func oneLineText(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxRemoteDetail {
		s = strings.ToValidUTF8(s[:maxRemoteDetail], "") + "…"
	}
	return s
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

func (r *Remote) accounts(ctx context.Context) (out AccountList, err error) {
	return out, r.call(ctx, request{method: http.MethodGet, path: "/api/kf/accounts"}, &out)
}

func (r *Remote) saveAccount(ctx context.Context, update bool, in wechat.KfAccountInput) (out Outcome, err error) {
	body := accountBody{KfAccount: in.KfAccount, Nickname: in.Nickname, Password: in.Password}
	req := request{method: http.MethodPost, path: "/api/kf/accounts", json: body}
	if update {
		body.KfAccount = ""
		req = request{method: http.MethodPut, path: "/api/kf/accounts/" + seg(in.KfAccount), json: body}
	}
	return out, r.call(ctx, req, &out)
}

func (r *Remote) deleteAccount(ctx context.Context, account string) (out Outcome, err error) {
	return out, r.call(ctx, request{method: http.MethodDelete, path: "/api/kf/accounts/" + seg(account)}, &out)
}

func (r *Remote) inviteWorker(ctx context.Context, account, wx string) (out Outcome, err error) {
	body := map[string]string{"invite_wx": wx}
	return out, r.call(ctx, request{method: http.MethodPost, path: "/api/kf/accounts/" + seg(account) + "/invite", json: body}, &out)
}

// uploadAvatar sends the image as multipart/form-data in the field
// "media", as the API (and WeChat) want. An image over the API's limit is
// refused here rather than read whole into memory.
func (r *Remote) uploadAvatar(ctx context.Context, account, filename string, img io.Reader) (out Outcome, err error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("media", filename)
	if err != nil {
		return out, err
	}
	n, err := io.Copy(fw, io.LimitReader(img, MaxAvatarBody+1))
	if err != nil {
		return out, fmt.Errorf("upload avatar of %s: %w", account, err)
	}
	if n > MaxAvatarBody {
		return out, fmt.Errorf("upload avatar of %s: the image is over %d bytes, more than the admin API accepts", account, MaxAvatarBody)
	}
	if err := mw.Close(); err != nil {
		return out, err
	}
	req := request{method: http.MethodPost, path: "/api/kf/accounts/" + seg(account) + "/avatar", body: buf.Bytes(), contentType: mw.FormDataContentType()}
	return out, r.call(ctx, req, &out)
}

func (r *Remote) online(ctx context.Context) (out OnlineList, err error) {
	return out, r.call(ctx, request{method: http.MethodGet, path: "/api/kf/online"}, &out)
}

func (r *Remote) waiting(ctx context.Context) (out WaitingList, err error) {
	return out, r.call(ctx, request{method: http.MethodGet, path: "/api/kf/waiting"}, &out)
}

func (r *Remote) session(ctx context.Context, openid string) (out SessionState, err error) {
	return out, r.call(ctx, request{method: http.MethodGet, path: "/api/kf/sessions/" + seg(openid)}, &out)
}

func (r *Remote) sessions(ctx context.Context, account string) (out SessionList, err error) {
	return out, r.call(ctx, request{method: http.MethodGet, path: "/api/kf/sessions", query: url.Values{"kf": {account}}}, &out)
}

func (r *Remote) createSession(ctx context.Context, req SessionRequest) (out Outcome, err error) {
	body := sessionBody{OpenID: req.OpenID, KfAccount: req.KfAccount, Group: req.Group, Text: req.Text}
	return out, r.call(ctx, request{method: http.MethodPost, path: "/api/kf/sessions", json: body}, &out)
}

func (r *Remote) closeSession(ctx context.Context, openid, account, text string) (out Outcome, err error) {
	body := sessionBody{OpenID: openid, KfAccount: account, Text: text}
	return out, r.call(ctx, request{method: http.MethodPost, path: "/api/kf/sessions/close", json: body}, &out)
}

func (r *Remote) listGroups(ctx context.Context) (out GroupList, err error) {
	return out, r.call(ctx, request{method: http.MethodGet, path: "/api/kf/groups"}, &out)
}

func (r *Remote) createGroup(ctx context.Context, name string, keywords, members []string) (out Group, err error) {
	body := groupBody{Name: name, Keywords: keywords, Members: members}
	return out, r.call(ctx, request{method: http.MethodPost, path: "/api/kf/groups", json: body}, &out)
}

func (r *Remote) addMembers(ctx context.Context, name string, accounts []string) (out Group, err error) {
	body := map[string][]string{"members": accounts}
	return out, r.call(ctx, request{method: http.MethodPost, path: "/api/kf/groups/" + seg(name) + "/members", json: body}, &out)
}

// removeMembers takes all the accounts out in one request, so that the
// change is one compare-and-set as in the direct mode.
func (r *Remote) removeMembers(ctx context.Context, name string, accounts []string) (out Group, err error) {
	req := request{method: http.MethodDelete, path: "/api/kf/groups/" + seg(name) + "/members", query: url.Values{"account": accounts}}
	return out, r.call(ctx, req, &out)
}

func (r *Remote) setKeywords(ctx context.Context, name string, keywords []string) (out Group, err error) {
	if keywords == nil {
		keywords = []string{} // null would be refused: [] clears them
	}
	body := map[string][]string{"keywords": keywords}
	return out, r.call(ctx, request{method: http.MethodPut, path: "/api/kf/groups/" + seg(name) + "/keywords", json: body}, &out)
}

func (r *Remote) deleteGroup(ctx context.Context, name string) (out Outcome, err error) {
	return out, r.call(ctx, request{method: http.MethodDelete, path: "/api/kf/groups/" + seg(name)}, &out)
}
