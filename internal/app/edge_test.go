package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

const (
	edgeAppID     = "wxedge0000000001"
	edgeSecret    = "edge-app-secret"
	edgeToken     = "edge-callback-token"
	edgeAESKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	testAdmin     = "admin-tok-7f3a9c2e5b1d4f6a8c0e2b4d6f8a1c3e"
	testReadOnly  = "read-tok-1b3d5f7a9c2e4f6b8d0a2c4e6f8b1d3f"
	jsonMediaType = "application/json"
)

// runningRole is `kefu all` started in-process on free ports, with the
// WeChat API pointed at a fake, so that every service registers its routes.
type runningRole struct {
	base, natsURL string
	fake          *wechattest.Server
	stop          func()
}

func startAll(t *testing.T, env map[string]string) *runningRole {
	t.Helper()
	fake, err := wechattest.New(wechattest.Config{AppID: edgeAppID, AppSecret: edgeSecret, Token: edgeToken, EncodingAESKey: edgeAESKey})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(fake)
	t.Cleanup(func() { api.Close(); fake.Close() })

	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	for k, v := range map[string]string{
		"KEFU_HTTP_ADDR": httpAddr, "KEFU_NATS_LISTEN": natsAddr, "KEFU_DATA_DIR": t.TempDir(),
		"KEFU_WECHAT_APPID": edgeAppID, "KEFU_WECHAT_SECRET": edgeSecret, "KEFU_WECHAT_TOKEN": edgeToken,
		"KEFU_WECHAT_AES_KEY": edgeAESKey, "KEFU_WECHAT_API_BASE": api.URL, "KEFU_LOG_LEVEL": "error",
	} {
		t.Setenv(k, v)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, []string{"all"}, io.Discard, &stderr) }()
	r := &runningRole{base: "http://" + httpAddr, natsURL: "nats://" + natsAddr, fake: fake}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v (%s)", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("did not stop")
		}
	}
	t.Cleanup(r.stop)
	// /healthz is not rate limited: poll it, not /readyz.
	waitHTTP(t, r.base+"/healthz", 200)
	return r
}

// request sends method path with the given Authorization header (none when
// empty) and X-Forwarded-For (none when empty).
func request(t *testing.T, c *http.Client, method, url, authorization, xff string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// apiPaths are GET endpoints of every service that serves /api/.
var apiPaths = []string{
	"/api/kf/queue",                // estimator
	"/api/kf/customers/o-someone",  // queuecare
	"/api/kf/stale",                // queuecare
	"/api/feedback/posts",          // feedback
	"/api/feedback/sessions",       // feedback
	"/api/kf/accounts",             // admin
	"/api/kf/online",               // admin
	"/api/kf/groups",               // admin
	"/api/kf/sessions/o-someone",   // admin
	"/api/kf/not-a-route",          // nothing: still not served without a token
	"/api/feedback/not-a-route",    // nothing, outside the admin API's prefix
	"//api/kf/queue",               // cleaned by the mux
	"/%61pi/kf/queue",              // escaped
	"/api/kf/queue/../customers/x", // cleaned by the mux
}

// noRedirects shows the answer to the request itself.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// With no token configured, no /api/ path of any service is served: not to
// a stranger, not to someone guessing a token.
func TestAPIWithoutTokensIsNotServed(t *testing.T) {
	r := startAll(t, nil)
	for _, path := range apiPaths {
		for _, auth := range []string{"", "Bearer " + testAdmin} {
			for _, method := range []string{"GET", "POST"} {
				resp, body := request(t, noRedirects, method, r.base+path, auth, "", nil)
				if resp.StatusCode != 404 {
					t.Errorf("%s %s (Authorization %q): %d %s %q; want 404", method, path, auth, resp.StatusCode, resp.Header.Get("Content-Type"), body)
					continue
				}
				// The answer to an unknown path, which says nothing of
				// the API or its configuration.
				if p := httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, []byte(body)); p.Detail != "no such endpoint" {
					t.Errorf("%s %s: detail %q, want that of an unknown path", method, path, p.Detail)
				}
			}
		}
	}
	if n := r.fake.CallCount(wechattest.MethodKFList); n != 0 {
		t.Errorf("WeChat was called %d times for /api/ requests", n)
	}
	// The public paths are still served.
	if resp, _ := request(t, nil, "POST", r.base+"/wechat/callback", "", "", strings.NewReader("<xml/>")); resp.StatusCode != 401 {
		t.Errorf("unsigned callback: %d, want 401 from ingest", resp.StatusCode)
	}
}

func TestAPIAnswersOnlyToItsTokens(t *testing.T) {
	metricsAddr := freeAddr(t)
	r := startAll(t, map[string]string{
		"KEFU_ADMIN_TOKEN": testAdmin, "KEFU_API_TOKEN": testReadOnly, "KEFU_METRICS_ADDR": metricsAddr,
		// A migration setting whose warning /readyz shows to token holders.
		"KEFU_WECHAT_ALLOW_PLAINTEXT": "true",
	})
	lastByte := func(s string) string { return s[:len(s)-1] + string(s[len(s)-1]^1) }
	served := func(resp *http.Response) bool {
		// The handler's answer: JSON, or a problem of its own (the
		// estimator before its first poll), not the guard's refusal.
		ct := resp.Header.Get("Content-Type")
		return (strings.HasPrefix(ct, jsonMediaType) || ct == httpapi.ContentTypeProblem) && resp.StatusCode != 401 && resp.StatusCode != 403
	}
	for _, path := range apiPaths {
		t.Run(path, func(t *testing.T) {
			for _, tt := range []struct{ auth, challenge string }{
				{"", `Bearer realm="kefu"`},
				{"Basic " + testAdmin, `Bearer realm="kefu"`},
				{"Bearer wrong", `Bearer realm="kefu", error="invalid_token"`},
				{"Bearer " + lastByte(testAdmin), `Bearer realm="kefu", error="invalid_token"`},
				{"Bearer " + lastByte(testReadOnly), `Bearer realm="kefu", error="invalid_token"`},
			} {
				for _, method := range []string{"GET", "POST", "DELETE"} {
					resp, body := request(t, noRedirects, method, r.base+path, tt.auth, "", nil)
					if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != tt.challenge {
						t.Errorf("%s, Authorization %q: %d %q %q; want 401 %q", method, tt.auth, resp.StatusCode,
							resp.Header.Get("WWW-Authenticate"), body, tt.challenge)
					} else if p := httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, []byte(body)); p.Type != httpapi.Unauthorized.URI() {
						t.Errorf("%s: 401 of type %q", method, p.Type)
					}
				}
			}
			resp, body := request(t, noRedirects, "POST", r.base+path, "Bearer "+testReadOnly, "", strings.NewReader(`{}`))
			if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
				t.Errorf("POST with the read-only token: %d %q", resp.StatusCode, body)
			}
			if strings.Contains(path, "not-a-route") {
				// No route: a problem, whichever service's prefix.
				for _, method := range []string{"GET", "DELETE"} {
					resp, body := request(t, noRedirects, method, r.base+path, "Bearer "+testAdmin, "", nil)
					if resp.StatusCode != 404 {
						t.Errorf("%s with the admin token: %d %q, want 404", method, resp.StatusCode, body)
						continue
					}
					httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, []byte(body))
				}
			}
			if strings.Contains(path, "..") || strings.HasPrefix(path, "//") || strings.Contains(path, "not-a-route") {
				return // not a route of its own
			}
			for _, tok := range []string{testReadOnly, testAdmin} {
				resp, body := request(t, nil, "GET", r.base+path, "Bearer "+tok, "", nil)
				if !served(resp) {
					t.Errorf("GET with a valid token: %d %s %q; want the handler's JSON answer", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
			}
		})
	}
	if n := r.fake.CallCount(wechattest.MethodKFList); n != 2 {
		t.Errorf("getkflist called %d times; want 2 (the valid tokens' GETs only)", n)
	}

	// Writes: the read-only token changes nothing; the admin token does.
	online := r.fake.CallCount(wechattest.MethodKFAdd)
	if resp, _ := request(t, nil, "POST", r.base+"/api/kf/accounts", "Bearer "+testReadOnly, "",
		strings.NewReader(`{"kf_account":"mallory@edge","nickname":"M"}`)); resp.StatusCode != 403 {
		t.Errorf("read-only add account: %d", resp.StatusCode)
	}
	if resp, _ := request(t, nil, "POST", r.base+"/api/kf/groups", "Bearer "+testReadOnly, "",
		strings.NewReader(`{"name":"mallory"}`)); resp.StatusCode != 403 {
		t.Errorf("read-only create group: %d", resp.StatusCode)
	}
	if resp, body := request(t, nil, "GET", r.base+"/api/kf/groups", "Bearer "+testReadOnly, "", nil); resp.StatusCode != 200 || strings.Contains(body, "mallory") {
		t.Errorf("groups after the read-only token's POST: %d %q", resp.StatusCode, body)
	}
	if n := r.fake.CallCount(wechattest.MethodKFAdd); n != online {
		t.Errorf("kfaccount/add called %d times by the read-only token", n-online)
	}
	if resp, body := request(t, nil, "POST", r.base+"/api/kf/groups", "Bearer "+testAdmin, "",
		strings.NewReader(`{"name":"billing"}`)); resp.StatusCode != 201 {
		t.Errorf("admin create group: %d %q", resp.StatusCode, body)
	}
	if resp, body := request(t, nil, "GET", r.base+"/api/kf/groups", "Bearer "+testReadOnly, "", nil); resp.StatusCode != 200 || !strings.Contains(body, "billing") {
		t.Errorf("groups after the admin's POST: %d %q", resp.StatusCode, body)
	}

	// /metrics moved to its own address.
	if resp, _ := request(t, nil, "GET", r.base+"/metrics", "", "", nil); resp.StatusCode != 404 {
		t.Errorf("/metrics on the main address: %d, want 404", resp.StatusCode)
	}
	if resp, body := request(t, nil, "GET", "http://"+metricsAddr+"/metrics", "", "", nil); resp.StatusCode != 200 || !strings.Contains(body, "kefu_http_rate_limited_total") {
		t.Errorf("/metrics on KEFU_METRICS_ADDR: %d", resp.StatusCode)
	}
	// ...and nothing else is served there.
	if resp, _ := request(t, nil, "GET", "http://"+metricsAddr+"/api/kf/queue", "Bearer "+testAdmin, "", nil); resp.StatusCode != 404 {
		t.Errorf("/api/ on the metrics address: %d", resp.StatusCode)
	}

	// /readyz: the status to anyone, the detail only with a token.
	if resp, body := request(t, nil, "GET", r.base+"/readyz", "", "", nil); resp.StatusCode != 200 || body != "ready\n" {
		t.Errorf("/readyz without a token: %d %q", resp.StatusCode, body)
	}
	if resp, body := request(t, nil, "GET", r.base+"/readyz", "Bearer wrong", "", nil); resp.StatusCode != 200 || body != "ready\n" {
		t.Errorf("/readyz with a wrong token: %d %q", resp.StatusCode, body)
	}
	if resp, body := request(t, nil, "GET", r.base+"/readyz", "Bearer "+testReadOnly, "", nil); resp.StatusCode != 200 ||
		!strings.HasPrefix(body, "ready\nwarning: ") || !strings.Contains(body, "KEFU_WECHAT_ALLOW_PLAINTEXT") {
		t.Errorf("/readyz with the read-only token: %d %q; want ready and ingest's plaintext warning", resp.StatusCode, body)
	}

	// Both listeners close a connection whose headers never end, and
	// refuse oversized headers.
	for _, addr := range []string{strings.TrimPrefix(r.base, "http://"), metricsAddr} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		req.Header.Set("X-Padding", strings.Repeat("a", 80<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: 80 KiB of headers answered %d, want 431", addr, resp.StatusCode)
		}
	}
	slowHeaders(t, strings.TrimPrefix(r.base, "http://"), metricsAddr)
}

// slowHeaders opens a connection to each address, sends half a request and
// checks that the server hangs up after its header timeout (5 s) instead of
// waiting for ever.
func slowHeaders(t *testing.T, addrs ...string) {
	t.Helper()
	errs := make(chan error, len(addrs))
	for _, addr := range addrs {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			start := time.Now()
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err = io.ReadAll(c)
			switch {
			case err != nil:
				errs <- fmt.Errorf("%s: connection held open: %v", addr, err)
			case time.Since(start) < 4*time.Second:
				errs <- fmt.Errorf("%s: closed after %v, before the header timeout", addr, time.Since(start))
			default:
				errs <- nil
			}
		}()
	}
	for range addrs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// signedEvent is a subscribe event from openid, signed and encrypted as
// WeChat's safe mode does.
func signedEvent(t *testing.T, openid string) (url.Values, []byte) {
	t.Helper()
	codec, err := wechat.NewCodec(edgeToken, edgeAppID, edgeAESKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	plain := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_edge]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>`, openid, now)
	q, body, err := codec.SignCallback(wechat.ModeSafe, []byte(plain), openid, fmt.Sprint(now), "n-"+openid)
	if err != nil {
		t.Fatal(err)
	}
	return q, body
}

// storedOpenIDs reads the WeChat stream back.
func storedOpenIDs(t *testing.T, natsURL string) []string {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.DecodeSubject(m.Subject, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := ev.(events.EventReceived); ok {
			ids = append(ids, e.OpenID)
		}
	}
	slices.Sort(ids)
	return ids
}

// One client beyond its burst gets 429 and its callback is not stored;
// another client behind the same trusted proxy is still served. A client
// that is not a trusted proxy cannot pick its identity with
// X-Forwarded-For.
func TestPublicPathsAreRateLimitedPerClient(t *testing.T) {
	// 0.01 requests per second: a burst of 2, then one request per 100 s,
	// so nothing refills while the test runs.
	r := startAll(t, map[string]string{"KEFU_TRUSTED_PROXIES": "127.0.0.1", "KEFU_PUBLIC_RATE_LIMIT": "0.01"})
	callback := func(openid, xff string, c *http.Client) (*http.Response, string) {
		q, body := signedEvent(t, openid)
		return request(t, c, "POST", r.base+"/wechat/callback?"+q.Encode(), "", xff, bytes.NewReader(body))
	}
	for _, id := range []string{"o-alice-1", "o-alice-2"} {
		if resp, body := callback(id, "198.51.100.1", nil); resp.StatusCode != 200 {
			t.Fatalf("callback %s within the burst: %d %q", id, resp.StatusCode, body)
		}
	}
	resp, body := callback("o-alice-3", "198.51.100.1", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("burst+1: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if p := httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, []byte(body)); p.Type != httpapi.RateLimited.URI() {
		t.Errorf("429 of type %q", p.Type)
	}
	// The same client on the feedback page and an unknown path: one bucket.
	for _, path := range []string{"/feedback/avatar.png", "/tucao/webhook", "/no-such-page"} {
		if resp, _ := request(t, nil, "GET", r.base+path, "", "198.51.100.1", nil); resp.StatusCode != 429 {
			t.Errorf("%s from the limited client: %d, want 429", path, resp.StatusCode)
		}
	}
	// Writing another address left of the proxy's does not help.
	if resp, _ := callback("o-alice-4", "203.0.113.50, 198.51.100.1", nil); resp.StatusCode != 429 {
		t.Errorf("spoofed X-Forwarded-For through the proxy: %d, want 429", resp.StatusCode)
	}
	// Another client is served.
	if resp, body := callback("o-bob-1", "198.51.100.2", nil); resp.StatusCode != 200 {
		t.Fatalf("another client: %d %q", resp.StatusCode, body)
	}
	// Private paths and probes are not limited.
	if resp, _ := request(t, nil, "GET", r.base+"/healthz", "", "198.51.100.1", nil); resp.StatusCode != 200 {
		t.Errorf("/healthz from the limited client: %d", resp.StatusCode)
	}

	// A peer that is not a trusted proxy (127.0.0.2) is its own client,
	// whatever X-Forwarded-For it sends.
	untrusted := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	codes := []int{}
	for i, id := range []string{"o-carol-1", "o-carol-2", "o-carol-3"} {
		resp, _ := callback(id, fmt.Sprintf("192.0.2.%d", i+1), untrusted)
		codes = append(codes, resp.StatusCode)
	}
	if !slices.Equal(codes, []int{200, 200, 429}) {
		t.Errorf("untrusted peer with a new X-Forwarded-For each time: %v, want [200 200 429]", codes)
	}

	want := []string{"o-alice-1", "o-alice-2", "o-bob-1", "o-carol-1", "o-carol-2"}
	if got := storedOpenIDs(t, r.natsURL); !slices.Equal(got, want) {
		t.Errorf("stored events from %v, want %v (nothing refused may be stored)", got, want)
	}
	// The refusals are counted, in one series.
	resp, body = request(t, nil, "GET", r.base+"/metrics", "", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "kefu_http_rate_limited_total 6\n") {
		i := strings.Index(body, "kefu_http_rate_limited_total")
		t.Errorf("metrics: %d %q", resp.StatusCode, body[max(0, i):min(len(body), i+120)])
	}
}

// readyz runs against a real NATS server with a module whose check fails
// with an error naming a database user, and one with a warning.
type failingCheck struct{ err error }

func (c failingCheck) Ready(context.Context) error { return c.err }

type warningModule []string

func (w warningModule) Warnings() []string { return w }

func TestReadyzDetailOnlyWithAToken(t *testing.T) {
	b, _ := bustest.Open(t, bustest.Config(func(c *bus.Config) { c.Logger, c.Registerer = zap.NewNop(), prometheus.NewRegistry() }))
	rt := &runtime{cfg: config.Config{AdminToken: testAdmin, APIToken: testReadOnly}, bus: b,
		warners: []warner{warningModule{"plaintext callbacks accepted (KEFU_WECHAT_ALLOW_PLAINTEXT)"}}}
	hs := httptest.NewServer(http.HandlerFunc(rt.readyz))
	defer hs.Close()

	check := func(name, auth string, wantStatus int, wantBody string) {
		t.Helper()
		resp, body := request(t, nil, "GET", hs.URL, auth, "", nil)
		if resp.StatusCode != wantStatus || body != wantBody {
			t.Errorf("%s: %d %q; want %d %q", name, resp.StatusCode, body, wantStatus, wantBody)
		}
		if wantStatus == http.StatusServiceUnavailable {
			httpapitest.CheckRetryAfter(t, resp.Header)
		} else if resp.Header.Get("Retry-After") != "" {
			t.Errorf("%s: Retry-After on a ready answer", name)
		}
	}
	warning := "warning: plaintext callbacks accepted (KEFU_WECHAT_ALLOW_PLAINTEXT)\n"
	check("ready, stranger", "", 200, "ready\n")
	check("ready, read-only token", "Bearer "+testReadOnly, 200, "ready\n"+warning)
	check("ready, admin token", "Bearer "+testAdmin, 200, "ready\n"+warning)

	rt.checks = []readyChecker{failingCheck{errors.New("postgres://kefu@db.internal:5432: connection refused")}}
	check("not ready, stranger", "", 503, "not ready\n")
	check("not ready, wrong token", "Bearer "+testAdmin+"x", 503, "not ready\n")
	check("not ready, read-only token", "Bearer "+testReadOnly, 503,
		"not ready: postgres://kefu@db.internal:5432: connection refused\n"+warning)

	rt.draining.Store(true)
	check("draining, stranger", "", 503, "not ready\n")
	check("draining, admin token", "Bearer "+testAdmin, 503, "not ready: draining\n"+warning)
}
