package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/wechat"
)

// WeChat errcodes the doctor explains beyond those package wechat names.
const (
	codeInvalidAppID     = 40013
	codeInvalidAppSecret = 40125
	codeIPNotWhitelisted = 40164
)

// whitelistIP finds the caller's address in 40164's errmsg, e.g. "invalid
// ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: …".
var whitelistIP = regexp.MustCompile(`invalid ip ([0-9A-Fa-f.:]+)`)

// staticToken is a TokenSource holding the token the doctor fetched.
type staticToken string

func (t staticToken) Token(context.Context) (string, error)  { return string(t), nil }
func (staticToken) Invalidate(context.Context, string) error { return nil }

// wechatState is shared by the WeChat checks: the token the first fetched
// serves the 多客服 check.
type wechatState struct {
	cfg   config.Config
	hc    *http.Client
	mu    sync.Mutex
	token string // stored only by a check that returned in time
}

// WeChatChecks are the checks of the WeChat credentials (an access token
// from the stable token API, as the services fetch it) and of 多客服
// (getkflist, getonlinekflist). hc carries the calls (nil: a default
// client); each check's context bounds them.
func WeChatChecks(cfg config.Config, hc *http.Client) []Check {
	if hc == nil {
		hc = &http.Client{}
	}
	s := &wechatState{cfg: cfg, hc: hc}
	return []Check{{Name: "WeChat credentials", Run: s.credentials}, {Name: "多客服", Run: s.kf}}
}

func (s *wechatState) credentials(ctx context.Context) []Result {
	if s.cfg.WeChatAppID == "" || s.cfg.WeChatSecret == "" {
		return []Result{{Status: Skip, Found: "KEFU_WECHAT_APPID and KEFU_WECHAT_SECRET are not both set"}}
	}
	f := &wechat.StableTokenFetcher{BaseURL: s.cfg.WeChatAPIBase, AppID: s.cfg.WeChatAppID, Secret: s.cfg.WeChatSecret.Value(), HTTPClient: s.hc}
	tok, err := f.FetchToken(ctx, false)
	if err != nil {
		return []Result{wechatError("an access token", err, s.cfg.WeChatAPIBase)}
	}
	s.mu.Lock()
	if ctx.Err() == nil {
		s.token = tok.AccessToken
	}
	s.mu.Unlock()
	return []Result{{Status: OK, Found: fmt.Sprintf("AppID %s: access token issued (valid %s)", s.cfg.WeChatAppID, tok.ExpiresIn)}}
}

// wechatError explains a failed WeChat call: what it was for and the fix.
func wechatError(what string, err error, base string) Result {
	r := Result{Status: Fail, Found: fmt.Sprintf("WeChat refused %s: %v", what, err)}
	var apiErr *wechat.APIError
	if !errors.As(err, &apiErr) {
		if base == "" {
			base = wechat.DefaultBaseURL
		}
		r.Found = fmt.Sprintf("cannot reach WeChat at %s: %v", base, err)
		r.Fix = "let this host reach " + base + " over HTTPS (firewall, proxy, DNS), or correct KEFU_WECHAT_API_BASE"
		return r
	}
	switch apiErr.ErrCode {
	case wechat.ErrCodeInvalidCredential, codeInvalidAppSecret:
		r.Fix = "KEFU_WECHAT_SECRET is not the account's AppSecret: copy 开发者密码(AppSecret) from 公众号后台 → 设置与开发 → 基本配置 (reset it there if lost)"
	case codeInvalidAppID:
		r.Fix = "KEFU_WECHAT_APPID is not a valid AppID: copy 开发者ID(AppID) from 公众号后台 → 设置与开发 → 基本配置"
	case codeIPNotWhitelisted:
		ip := "this host's address"
		if m := whitelistIP.FindStringSubmatch(apiErr.ErrMsg); m != nil {
			ip = m[1]
		}
		r.Found = fmt.Sprintf("WeChat refused %s: errcode 40164, IP %s is not on the account's IP whitelist", what, ip)
		r.Fix = fmt.Sprintf("IP %s is not on the account's IP whitelist: add it in 公众号后台 → 基本配置 → IP白名单", ip)
	case wechat.ErrCodeDailyQuotaExceeded, wechat.ErrCodeFrequencyLimit:
		r.Status = Warn
		r.Fix = "WeChat's call quota for the account is used up (45009: today, 45011: this minute): wait, and look for another program fetching tokens with the same AppID"
	case wechat.ErrCodeSystemBusy:
		r.Status = Warn
		r.Fix = "WeChat answered -1 (system busy): run `kefu doctor` again in a minute"
	default:
		r.Fix = "look errcode " + strconv.Itoa(apiErr.ErrCode) + " up in WeChat's global return codes (全局返回码说明)"
	}
	return r
}

func (s *wechatState) kf(ctx context.Context) []Result {
	s.mu.Lock()
	token := s.token
	s.mu.Unlock()
	if token == "" {
		return []Result{{Status: Skip, Found: "no access token"}}
	}
	c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: s.cfg.WeChatAPIBase, HTTPClient: s.hc, Tokens: staticToken(token), MaxRetries: -1})
	if err != nil {
		return []Result{{Status: Fail, Found: err.Error(), Fix: "correct KEFU_WECHAT_API_BASE"}}
	}
	accounts, err := c.GetKfList(ctx)
	if err != nil {
		return []Result{kfError("getkflist", err, s.cfg.WeChatAPIBase)}
	}
	online, err := c.GetOnlineKfList(ctx)
	if err != nil {
		return []Result{kfError("getonlinekflist", err, s.cfg.WeChatAPIBase)}
	}
	if len(accounts) == 0 {
		return []Result{{Status: Warn, Found: "多客服 is on but the account has no kf accounts: no customer can be served",
			Fix: "add agents in 公众号后台 → 客服功能, or `kefu kf account add`"}}
	}
	r := Result{Status: OK, Found: fmt.Sprintf("%d kf accounts, %d online", len(accounts), len(online))}
	return []Result{r}
}

func kfError(method string, err error, base string) Result {
	var apiErr *wechat.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrCode == wechat.ErrCodeKfAPIUnavailable || apiErr.ErrCode == wechat.ErrCodeSystemBusy) {
		return Result{Status: Fail, Found: fmt.Sprintf("%s: errcode %d: 多客服 is not enabled or its API is unavailable for this account", method, apiErr.ErrCode),
			Fix: "enable 多客服 in 公众号后台 (功能 → 添加功能插件 → 客服功能, upgraded to the new 多客服) and run `kefu doctor` again"}
	}
	return wechatError(method, err, base)
}

// CallbackCheck calls KEFU_PUBLIC_URL/wechat/callback as WeChat does when
// an administrator saves the server configuration: a GET signed with
// KEFU_WECHAT_TOKEN that must echo echostr. Nothing is published: kefu
// answers the verification without an event. In AES mode it then POSTs an
// encrypted probe (see probeAES) that kefu can decrypt only with the same
// key and refuses without publishing anything.
func CallbackCheck(cfg config.Config, hc *http.Client, now func() time.Time) Check {
	if hc == nil {
		hc = &http.Client{}
	}
	if now == nil {
		now = time.Now
	}
	return Check{Name: "callback URL", Run: func(ctx context.Context) []Result {
		base := strings.TrimRight(cfg.PublicURL, "/")
		switch {
		case base == "":
			return []Result{{Status: Skip, Found: "KEFU_PUBLIC_URL is not set", Fix: "set KEFU_PUBLIC_URL to the public base URL to have the callback tested"}}
		case cfg.WeChatToken == "":
			return []Result{{Status: Skip, Found: "KEFU_WECHAT_TOKEN is not set"}}
		}
		rs := []Result{verifyCallback(ctx, hc, base+"/wechat/callback", cfg.WeChatToken.Value(), now())}
		if cfg.WeChatAESKey != "" && rs[0].Status == OK {
			rs = append(rs, withName(probeAES(ctx, hc, base+"/wechat/callback", cfg.WeChatToken.Value(), cfg.WeChatAESKey.Value(), now()), "callback URL (AES)"))
		}
		return rs
	}}
}

func verifyCallback(ctx context.Context, hc *http.Client, endpoint, token string, now time.Time) Result {
	ts := strconv.FormatInt(now.Unix(), 10)
	var b [8]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:4])
	echo := "kefu-doctor-" + hex.EncodeToString(b[4:])
	u := fmt.Sprintf("%s?signature=%s&timestamp=%s&nonce=%s&echostr=%s", endpoint, wechat.Signature(token, ts, nonce), ts, nonce, echo)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Result{Status: Fail, Found: err.Error(), Fix: "set KEFU_PUBLIC_URL to an absolute https URL"}
	}
	req.Header.Set("User-Agent", "kefu-doctor")
	resp, err := hc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its URL carries the signature
		}
		return callbackTransportError(endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	text := strings.TrimSpace(string(body))
	switch {
	case resp.StatusCode == http.StatusOK && text == echo:
		return Result{Status: OK, Found: endpoint + " echoes echostr: WeChat's 服务器配置 check will pass"}
	case resp.StatusCode == http.StatusOK:
		return Result{Status: Fail, Found: fmt.Sprintf("%s answered 200 without echoing echostr (%q): it is not kefu's callback", endpoint, shorten(text)),
			Fix: "route KEFU_PUBLIC_URL/wechat/callback to kefu's ingest role in the proxy, and set KEFU_PUBLIC_URL to kefu's base URL"}
	case (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && strings.Contains(text, "signature"):
		return Result{Status: Fail, Found: fmt.Sprintf("%s refused the signature (%s): ingest runs with another token", endpoint, resp.Status),
			Fix: "set KEFU_WECHAT_TOKEN to the same Token as 公众号后台 → 基本配置 → 服务器配置, here and in the ingest role, and restart ingest"}
	case resp.StatusCode == http.StatusUnauthorized && strings.Contains(text, "timestamp"):
		return Result{Status: Fail, Found: fmt.Sprintf("%s refused the timestamp (%s): the ingest host's clock and this one differ", endpoint, resp.Status),
			Fix: "synchronise the clocks (NTP) of the ingest host and this one"}
	case resp.StatusCode == http.StatusForbidden && strings.Contains(text, "source address"):
		return Result{Status: Warn, Found: endpoint + " refuses this host's address (KEFU_WECHAT_IP_ALLOWLIST): only WeChat's servers may call it",
			Fix: "run `kefu doctor` with KEFU_PUBLIC_URL pointing past the allow-list, or trust the first real callback"}
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return Result{Status: Fail, Found: fmt.Sprintf("%s: %s: nothing serves the callback path", endpoint, resp.Status),
			Fix: "set KEFU_PUBLIC_URL to kefu's base URL (kefu adds /wechat/callback) and route that path to the ingest role"}
	case resp.StatusCode >= 500:
		return Result{Status: Fail, Found: fmt.Sprintf("%s: %s: %s", endpoint, resp.Status, shorten(text)),
			Fix: "look at the ingest role: running, ready (`kefu healthcheck /readyz`), and reached by the proxy"}
	}
	return Result{Status: Fail, Found: fmt.Sprintf("%s: %s: %s", endpoint, resp.Status, shorten(text)),
		Fix: "route KEFU_PUBLIC_URL/wechat/callback to kefu's ingest role unchanged (method, query)"}
}

func callbackTransportError(endpoint string, err error) Result {
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var unknownCA x509.UnknownAuthorityError
	var recordErr tls.RecordHeaderError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &unknownCA):
		return Result{Status: Fail, Found: fmt.Sprintf("TLS error calling %s: %v", endpoint, err),
			Fix: "install a certificate for the host of KEFU_PUBLIC_URL signed by a public CA, with its full chain (WeChat refuses others)"}
	case errors.As(err, &recordErr), strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		return Result{Status: Fail, Found: fmt.Sprintf("TLS error calling %s: the server does not speak TLS on that port", endpoint),
			Fix: "serve https on the port of KEFU_PUBLIC_URL, or set KEFU_PUBLIC_URL to http:// if it is plain HTTP"}
	case errors.As(err, &dnsErr):
		return Result{Status: Fail, Found: fmt.Sprintf("%s: the host name does not resolve: %v", endpoint, dnsErr),
			Fix: "publish a DNS record for the host of KEFU_PUBLIC_URL, or correct KEFU_PUBLIC_URL"}
	}
	return Result{Status: Fail, Found: fmt.Sprintf("%s is unreachable: %v", endpoint, err),
		Fix: "make KEFU_PUBLIC_URL reachable from the internet on 443 or 80 (proxy, firewall, port forwarding), or correct it"}
}

func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// probeAppID is the AppID the AES probe is sealed for: not the account's,
// so ingest, having decrypted it, refuses it ("payload is not for this
// account") instead of publishing it. A callback kefu accepts becomes an
// event the services act upon; the probe never is one.
const probeAppID = "kefu-doctor-probe"

// probeAES POSTs a safe-mode callback encrypted with aesKey and signed with
// token but sealed for probeAppID. The answer tells whether ingest holds the
// same EncodingAESKey: 401 "not for this account" means it decrypted the
// probe; 400 "malformed" means it could not. The body is not even a
// callback (<xml></xml>), so that no ingest could publish it. It counts once
// in kefu_ingest_rejected_total{reason="appid"}, far below the alert's rate.
func probeAES(ctx context.Context, hc *http.Client, endpoint, token, aesKey string, now time.Time) Result {
	codec, err := wechat.NewCodec(token, probeAppID, aesKey)
	if err != nil {
		return Result{Status: Fail, Found: "KEFU_WECHAT_AES_KEY: " + err.Error(), Fix: "set KEFU_WECHAT_AES_KEY to the EncodingAESKey of 公众号后台 → 基本配置 → 服务器配置"}
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	var b [4]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	envelope, msgSignature, err := codec.Seal([]byte("<xml></xml>"), ts, nonce)
	if err != nil {
		return Result{Status: Fail, Found: "KEFU_WECHAT_AES_KEY: " + err.Error(), Fix: "set KEFU_WECHAT_AES_KEY to the EncodingAESKey of 公众号后台 → 基本配置 → 服务器配置"}
	}
	q := url.Values{"signature": {wechat.Signature(token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce},
		"encrypt_type": {"aes"}, "msg_signature": {msgSignature}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"?"+q.Encode(), bytes.NewReader(envelope))
	if err != nil {
		return Result{Status: Fail, Found: err.Error(), Fix: "set KEFU_PUBLIC_URL to an absolute https URL"}
	}
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("User-Agent", "kefu-doctor")
	resp, err := hc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return callbackTransportError(endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	text := strings.TrimSpace(string(body))
	switch {
	case resp.StatusCode == http.StatusUnauthorized && strings.Contains(text, "not for this account"):
		return Result{Status: OK, Found: "ingest decrypts with the same KEFU_WECHAT_AES_KEY (the probe, sealed for another AppID, was refused and published nothing)"}
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(text, "KEFU_WECHAT_AES_KEY is not set"):
		return Result{Status: Fail, Found: "ingest has no KEFU_WECHAT_AES_KEY: encrypted callbacks (兼容/安全模式) are refused",
			Fix: "set KEFU_WECHAT_AES_KEY in the ingest role too, and restart it"}
	case resp.StatusCode == http.StatusBadRequest:
		return Result{Status: Fail, Found: "ingest cannot decrypt a message sealed with this KEFU_WECHAT_AES_KEY: it holds another key",
			Fix: "set KEFU_WECHAT_AES_KEY to the EncodingAESKey of 公众号后台 → 基本配置 → 服务器配置, here and in the ingest role"}
	case resp.StatusCode == http.StatusForbidden && strings.Contains(text, "source address"):
		return Result{Status: Skip, Found: "the callback refuses this host's address (KEFU_WECHAT_IP_ALLOWLIST); the key is checked by the first real callback"}
	}
	return Result{Status: Warn, Found: fmt.Sprintf("the encrypted probe was answered %s: %s", resp.Status, shorten(text)),
		Fix: "look at the ingest role's log for the callback it refused"}
}
