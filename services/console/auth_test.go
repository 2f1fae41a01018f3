package console

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
)

const (
	adminTok = "admin-token-0123456789"
	readTok  = "read-token-0123456789"
)

// recorder is a stand-in for the kf admin API that remembers what reached it.
type recorder struct {
	calls []recorded
}

type recorded struct{ method, path, auth, body string }

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.calls = append(r.calls, recorded{req.Method, req.URL.Path, req.Header.Get("Authorization"), string(b)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"action":"ok"}`)
}

func newTestService(t *testing.T, cfg Config, actions http.Handler) *Service {
	t.Helper()
	if cfg.AdminToken == "" && cfg.ReadOnlyToken == "" {
		cfg.AdminToken, cfg.ReadOnlyToken = adminTok, readTok
	}
	s, err := New(cfg, Deps{Actions: actions})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func do(h http.Handler, method, path, body string, mod func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if mod != nil {
		mod(req)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// signIn returns the session cookie and CSRF token of a sign-in with tok.
func signIn(t *testing.T, h http.Handler, tok string) (*http.Cookie, string) {
	t.Helper()
	w := do(h, "POST", "/console/api/login", `{"token":"`+tok+`"}`, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("sign in: %d %s", w.Code, w.Body)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("sign in set %d cookies", len(cookies))
	}
	csrf := between(w.Body.String(), `"csrf":"`, `"`)
	if csrf == "" {
		t.Fatalf("no csrf token in %s", w.Body)
	}
	return cookies[0], csrf
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	j := strings.Index(s, to)
	if j < 0 {
		return ""
	}
	return s[:j]
}

func TestSignIn(t *testing.T) {
	s := newTestService(t, Config{}, &recorder{})
	h := s.Handler()
	tests := []struct {
		name   string
		body   string
		status int
		role   string
	}{
		{"the admin token signs in as admin", `{"token":"` + adminTok + `"}`, 200, RoleAdmin},
		{"the read-only token signs in read-only", `{"token":"` + readTok + `"}`, 200, RoleReadOnly},
		{"another token is refused", `{"token":"guess"}`, 401, ""},
		{"nothing to sign in with is a bad request", `{}`, 400, ""},
		{"both a token and a code is a bad request", `{"token":"a","code":"b"}`, 400, ""},
		{"an unknown field is a bad request", `{"token":"` + adminTok + `","remember":true}`, 400, ""},
		{"not JSON is a bad request", `token=` + adminTok, 400, ""},
		{"a body over 4 KiB is refused", `{"token":"` + strings.Repeat("x", 5000) + `"}`, 413, ""},
		{"an unknown one-time code is refused", `{"code":"nope"}`, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(h, "POST", "/console/api/login", tt.body, nil)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			if tt.status >= 400 {
				httpapitest.CheckRecorded(t, w)
			} else if !strings.Contains(w.Header().Get("Content-Type"), "application/json") || !strings.Contains(w.Body.String(), `"`) {
				t.Errorf("answer is not JSON: %q", w.Body)
			}
			cookies := w.Result().Cookies()
			if tt.role == "" {
				if len(cookies) != 0 {
					t.Errorf("a refused sign-in set a cookie")
				}
				return
			}
			if !strings.Contains(w.Body.String(), `"role":"`+tt.role+`"`) {
				t.Errorf("body %s, want role %s", w.Body, tt.role)
			}
			c := cookies[0]
			if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console/" || c.Secure {
				t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/, not Secure over plain HTTP", c)
			}
			if strings.Contains(c.Value, adminTok) || strings.Contains(c.Value, readTok) {
				t.Error("the cookie carries the token")
			}
		})
	}
}

func TestOneTimeCodeWorksOnceAndExpires(t *testing.T) {
	s := newTestService(t, Config{}, &recorder{})
	h := s.Handler()
	code := s.SignInCode(true, time.Minute)
	if w := do(h, "POST", "/console/api/login", `{"code":"`+code+`"}`, nil); w.Code != 200 || !strings.Contains(w.Body.String(), `"role":"admin"`) {
		t.Fatalf("first use: %d %s", w.Code, w.Body)
	}
	if w := do(h, "POST", "/console/api/login", `{"code":"`+code+`"}`, nil); w.Code != 401 {
		t.Fatalf("second use answered %d", w.Code)
	}
	ro := s.SignInCode(false, time.Minute)
	if w := do(h, "POST", "/console/api/login", `{"code":"`+ro+`"}`, nil); w.Code != 200 || !strings.Contains(w.Body.String(), `"role":"read"`) {
		t.Fatalf("read-only code: %d %s", w.Code, w.Body)
	}
	old := s.SignInCode(true, time.Minute)
	s.sessions.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if w := do(h, "POST", "/console/api/login", `{"code":"`+old+`"}`, nil); w.Code != 401 {
		t.Fatalf("expired code answered %d", w.Code)
	}
}

func TestCookieIsSecureBehindTLS(t *testing.T) {
	s := newTestService(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, nil)
	h := s.Handler()
	tests := []struct {
		name   string
		mod    func(*http.Request)
		secure bool
	}{
		{"plain HTTP", func(r *http.Request) { r.RemoteAddr = "192.0.2.1:5000" }, false},
		{"TLS to kefu itself", func(r *http.Request) { r.TLS = &tls.ConnectionState{} }, true},
		{"a trusted proxy that terminated TLS", func(r *http.Request) {
			r.RemoteAddr = "10.1.2.3:5000"
			r.Header.Set("X-Forwarded-Proto", "https")
		}, true},
		{"X-Forwarded-Proto from anyone else is ignored", func(r *http.Request) {
			r.RemoteAddr = "192.0.2.1:5000"
			r.Header.Set("X-Forwarded-Proto", "https")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(h, "POST", "/console/api/login", `{"token":"`+readTok+`"}`, tt.mod)
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if c := w.Result().Cookies()[0]; c.Secure != tt.secure {
				t.Errorf("Secure=%v, want %v", c.Secure, tt.secure)
			}
		})
	}
}

func TestEndpointsNeedASession(t *testing.T) {
	s := newTestService(t, Config{}, &recorder{})
	h := s.Handler()
	cookie, _ := signIn(t, h, adminTok)
	tampered := *cookie
	v := []byte(cookie.Value)
	if v[5] == 'A' {
		v[5] = 'B'
	} else {
		v[5] = 'A'
	}
	tampered.Value = string(v) // a different role, expiry or nonce: the MAC no longer matches
	for _, path := range []string{"/console/api/state", "/console/api/events", "/console/api/me"} {
		if w := do(h, "GET", path, "", nil); w.Code != 401 {
			t.Errorf("%s without a cookie: %d", path, w.Code)
		}
		if w := do(h, "GET", path, "", func(r *http.Request) { r.AddCookie(&tampered) }); w.Code != 401 {
			t.Errorf("%s with a tampered cookie: %d", path, w.Code)
		}
	}
	// The positive case under the same conditions.
	if w := do(h, "GET", "/console/api/state", "", func(r *http.Request) { r.AddCookie(cookie) }); w.Code != 200 || !strings.Contains(w.Body.String(), `"waiting":[]`) {
		t.Fatalf("state with the cookie: %d %s", w.Code, w.Body)
	}
	s.sessions.now = func() time.Time { return time.Now().Add(13 * time.Hour) }
	if w := do(h, "GET", "/console/api/state", "", func(r *http.Request) { r.AddCookie(cookie) }); w.Code != 401 {
		t.Errorf("an expired session answered %d", w.Code)
	}
}

func TestChangingATokenSignsEveryoneOut(t *testing.T) {
	a := newTestService(t, Config{AdminToken: adminTok, ReadOnlyToken: readTok}, nil)
	b := newTestService(t, Config{AdminToken: adminTok, ReadOnlyToken: readTok}, nil)
	c := newTestService(t, Config{AdminToken: adminTok + "-rotated", ReadOnlyToken: readTok}, nil)
	cookie, _ := signIn(t, a.Handler(), readTok)
	if w := do(b.Handler(), "GET", "/console/api/me", "", func(r *http.Request) { r.AddCookie(cookie) }); w.Code != 200 {
		t.Errorf("another replica with the same tokens refused the cookie: %d", w.Code)
	}
	if w := do(c.Handler(), "GET", "/console/api/me", "", func(r *http.Request) { r.AddCookie(cookie) }); w.Code != 401 {
		t.Errorf("a replica with a rotated token accepted the cookie: %d", w.Code)
	}
}

func TestActionsNeedCSRFAndAdmin(t *testing.T) {
	rec := &recorder{}
	s := newTestService(t, Config{}, rec)
	h := s.Handler()
	admin, adminCSRF := signIn(t, h, adminTok)
	reader, readerCSRF := signIn(t, h, readTok)
	body := `{"kf_account":"kf1@test","openid":"o-1"}`
	tests := []struct {
		name   string
		cookie *http.Cookie
		mod    func(*http.Request)
		status int
	}{
		{"no CSRF header", admin, nil, 403},
		{"a wrong CSRF header", admin, func(r *http.Request) { r.Header.Set(CSRFHeader, "forged") }, 403},
		{"another session's CSRF token", admin, func(r *http.Request) { r.Header.Set(CSRFHeader, readerCSRF) }, 403},
		{"a cross-site request with the right token", admin, func(r *http.Request) {
			r.Header.Set(CSRFHeader, adminCSRF)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}, 403},
		{"a read-only session", reader, func(r *http.Request) { r.Header.Set(CSRFHeader, readerCSRF) }, 403},
		{"no session", nil, func(r *http.Request) { r.Header.Set(CSRFHeader, adminCSRF) }, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(h, "POST", "/console/api/kf/sessions/close", body, func(r *http.Request) {
				if tt.cookie != nil {
					r.AddCookie(tt.cookie)
				}
				if tt.mod != nil {
					tt.mod(r)
				}
			})
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
		})
	}
	if len(rec.calls) != 0 {
		t.Fatalf("a refused action reached the admin API: %+v", rec.calls)
	}
	w := do(h, "POST", "/console/api/kf/sessions/close", body, func(r *http.Request) {
		r.AddCookie(admin)
		r.Header.Set(CSRFHeader, adminCSRF)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	})
	if w.Code != http.StatusCreated || len(rec.calls) != 1 {
		t.Fatalf("the admin's action: %d %s, calls %+v", w.Code, w.Body, rec.calls)
	}
	if got := rec.calls[0]; got.method != "POST" || got.path != "/api/kf/sessions/close" || got.auth != "Bearer "+adminTok || got.body != body {
		t.Errorf("admin API got %+v", got)
	}
	// The logout of a signed-in session needs the CSRF token too.
	if w := do(h, "POST", "/console/api/logout", "{}", func(r *http.Request) { r.AddCookie(admin) }); w.Code != 403 {
		t.Errorf("logout without CSRF: %d", w.Code)
	}
}

func TestActionRoutesReachTheAdminAPI(t *testing.T) {
	tests := []struct {
		action, body          string
		method, path, forward string
	}{
		{"sessions", `{"openid":"o-1","group":"vip"}`, "POST", "/api/kf/sessions", `{"group":"vip","openid":"o-1"}`},
		{"sessions/close", `{"openid":"o-1","kf_account":"a@b"}`, "POST", "/api/kf/sessions/close", `{"kf_account":"a@b","openid":"o-1"}`},
		{"groups", `{"name":"vip","keywords":["退款"]}`, "POST", "/api/kf/groups", `{"keywords":["退款"],"name":"vip"}`},
		{"groups/keywords", `{"name":"vip","keywords":[]}`, "PUT", "/api/kf/groups/vip/keywords", `{"keywords":[]}`},
		{"groups/members", `{"name":"vip","members":["a@b"]}`, "POST", "/api/kf/groups/vip/members", `{"members":["a@b"]}`},
		{"groups/members/remove", `{"name":"vip","account":"a@b"}`, "DELETE", "/api/kf/groups/vip/members/a@b", ``},
		{"groups/delete", `{"name":"vip"}`, "DELETE", "/api/kf/groups/vip", ``},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			rec := &recorder{}
			h := newTestService(t, Config{}, rec).Handler()
			cookie, csrf := signIn(t, h, adminTok)
			w := do(h, "POST", "/console/api/kf/"+tt.action, tt.body, func(r *http.Request) {
				r.AddCookie(cookie)
				r.Header.Set(CSRFHeader, csrf)
			})
			if w.Code != http.StatusCreated || len(rec.calls) != 1 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if got := rec.calls[0]; got.method != tt.method || got.path != tt.path || got.body != tt.forward {
				t.Errorf("got %+v, want %s %s %s", got, tt.method, tt.path, tt.forward)
			}
		})
	}
	rec := &recorder{}
	h := newTestService(t, Config{}, rec).Handler()
	cookie, csrf := signIn(t, h, adminTok)
	for _, bad := range []struct{ action, body string }{
		{"accounts", `{}`}, {"groups/delete", `{}`}, {"groups/delete", `{"name":"vip","extra":1}`},
		{"groups/members/remove", `{"name":"vip"}`}, {"sessions", `[1,2]`},
	} {
		w := do(h, "POST", "/console/api/kf/"+bad.action, bad.body, func(r *http.Request) {
			r.AddCookie(cookie)
			r.Header.Set(CSRFHeader, csrf)
		})
		if w.Code != 400 && w.Code != 404 {
			t.Errorf("%s %s answered %d", bad.action, bad.body, w.Code)
		}
		httpapitest.CheckRecorded(t, w)
	}
	if len(rec.calls) != 0 {
		t.Errorf("bad actions reached the admin API: %+v", rec.calls)
	}
}

func TestReadOnlySeesNoActions(t *testing.T) {
	h := newTestService(t, Config{}, &recorder{}).Handler()
	for tok, want := range map[string]string{readTok: `"actions":false`, adminTok: `"actions":true`} {
		cookie, _ := signIn(t, h, tok)
		w := do(h, "GET", "/console/api/me", "", func(r *http.Request) { r.AddCookie(cookie) })
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("me: %s, want %s", w.Body, want)
		}
	}
}

func TestNotServedWithoutTokens(t *testing.T) {
	s, err := New(Config{}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/console/", "/console/app.js", "/console/api/state"} {
		if w := do(s.Handler(), "GET", p, "", nil); w.Code != 404 {
			t.Errorf("%s answered %d with no token configured", p, w.Code)
		}
	}
}

func TestPageAndAssetsAreEmbedded(t *testing.T) {
	h := newTestService(t, Config{}, nil).Handler()
	for path, want := range map[string]string{"/console/": "客服控制台", "/console/app.js": "EventSource", "/console/app.css": "--accent", "/console/i18n.js": "Service console"} {
		w := do(h, "GET", path, "", nil)
		if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d, missing %q", path, w.Code, want)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	if w := do(h, "POST", "/console/", "", nil); w.Code != 405 {
		t.Errorf("POST of the page: %d", w.Code)
	}
	if w := do(h, "GET", "/console/api/nothing", "", nil); w.Code != 404 {
		t.Errorf("unknown endpoint: %d %s", w.Code, w.Body)
	} else {
		httpapitest.CheckRecorded(t, w)
	}
}
