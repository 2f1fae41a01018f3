package httpedge_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/httpedge"
)

const (
	adminToken    = "admin-0123456789abcdef0123456789abcdef"
	readOnlyToken = "reader-0123456789abcdef0123456789abcdef"
)

func guardedServer(t *testing.T, tokens httpedge.Tokens) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var reached atomic.Int64
	hs := httptest.NewServer(tokens.Guard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		io.WriteString(w, `{"openid":"o-secret"}`)
	})))
	t.Cleanup(hs.Close)
	return hs, &reached
}

func send(t *testing.T, method, url, authorization string) (*http.Response, string) {
	t.Helper()
	resp, body := sendRaw(t, method, url, authorization)
	if resp.StatusCode >= 400 && method != "HEAD" {
		httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, []byte(body))
	}
	return resp, body
}

func sendRaw(t *testing.T, method, url, authorization string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestGuard(t *testing.T) {
	hs, reached := guardedServer(t, httpedge.NewTokens(adminToken, readOnlyToken))
	lastByte := func(s string) string { return s[:len(s)-1] + string(s[len(s)-1]^1) }
	tests := []struct {
		name, method, authorization string
		status                      int
		challenge                   string
	}{
		{"no Authorization header", "GET", "", 401, `Bearer realm="kefu"`},
		{"another scheme", "GET", "Basic " + adminToken, 401, `Bearer realm="kefu"`},
		{"an empty bearer", "GET", "Bearer ", 401, `Bearer realm="kefu"`},
		{"a wrong token", "GET", "Bearer wrong", 401, `Bearer realm="kefu", error="invalid_token"`},
		{"the admin token but its last byte", "GET", "Bearer " + lastByte(adminToken), 401, `Bearer realm="kefu", error="invalid_token"`},
		{"the read-only token but its last byte", "GET", "Bearer " + lastByte(readOnlyToken), 401, `Bearer realm="kefu", error="invalid_token"`},
		{"a prefix of the admin token", "GET", "Bearer " + adminToken[:10], 401, `Bearer realm="kefu", error="invalid_token"`},
		{"the admin token with more after it", "GET", "Bearer " + adminToken + "x", 401, `Bearer realm="kefu", error="invalid_token"`},
		{"the read-only token may GET", "GET", "Bearer " + readOnlyToken, 200, ""},
		{"the read-only token may HEAD", "HEAD", "Bearer " + readOnlyToken, 200, ""},
		{"the read-only token may not POST", "POST", "Bearer " + readOnlyToken, 403, `Bearer realm="kefu", error="insufficient_scope"`},
		{"the read-only token may not DELETE", "DELETE", "Bearer " + readOnlyToken, 403, `Bearer realm="kefu", error="insufficient_scope"`},
		{"the admin token may GET", "GET", "Bearer " + adminToken, 200, ""},
		{"the admin token may POST", "POST", "Bearer " + adminToken, 200, ""},
		{"the scheme is case-insensitive", "GET", "bearer " + adminToken, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := reached.Load()
			resp, body := send(t, tt.method, hs.URL+"/api/kf/queue", tt.authorization)
			if resp.StatusCode != tt.status || resp.Header.Get("WWW-Authenticate") != tt.challenge {
				t.Fatalf("%d %q; want %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tt.status, tt.challenge)
			}
			passed := reached.Load() - before
			if (tt.status == 200) != (passed == 1) {
				t.Fatalf("handler reached %d times for a %d", passed, tt.status)
			}
			if tt.status != 200 && strings.Contains(body, "o-secret") {
				t.Fatalf("refusal carries the handler's data: %q", body)
			}
			if tt.status == 401 {
				if p := httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, []byte(body)); p.Type != httpapi.Unauthorized.URI() {
					t.Fatalf("401 of type %q, want %q", p.Type, httpapi.Unauthorized.URI())
				}
			}
		})
	}
}

func TestGuardWithOneToken(t *testing.T) {
	// Only the read-only token: nothing may write. Only the admin token:
	// it does everything, and the empty read-only token matches nothing.
	ro, _ := guardedServer(t, httpedge.NewTokens("", readOnlyToken))
	if resp, _ := send(t, "POST", ro.URL, "Bearer "+readOnlyToken); resp.StatusCode != 403 {
		t.Errorf("read-only only, POST: %d", resp.StatusCode)
	}
	if resp, _ := send(t, "GET", ro.URL, "Bearer "+readOnlyToken); resp.StatusCode != 200 {
		t.Errorf("read-only only, GET: %d", resp.StatusCode)
	}
	admin, _ := guardedServer(t, httpedge.NewTokens(adminToken, ""))
	if resp, _ := send(t, "POST", admin.URL, "Bearer "+adminToken); resp.StatusCode != 200 {
		t.Errorf("admin only, POST: %d", resp.StatusCode)
	}
	if resp, _ := send(t, "GET", admin.URL, "Bearer "+readOnlyToken); resp.StatusCode != 401 {
		t.Errorf("admin only, the unconfigured read-only token: %d", resp.StatusCode)
	}
}

func TestGuardWithoutTokensServesNothing(t *testing.T) {
	hs, reached := guardedServer(t, httpedge.NewTokens("", ""))
	for _, auth := range []string{"", "Bearer ", "Bearer x", "Bearer " + adminToken} {
		for _, method := range []string{"GET", "POST"} {
			resp, _ := send(t, method, hs.URL+"/api/kf/queue", auth)
			if resp.StatusCode != 404 || resp.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("%s with %q: %d %q; want a plain 404", method, auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	if reached.Load() != 0 {
		t.Fatalf("handler reached %d times", reached.Load())
	}
}

func TestAuthorize(t *testing.T) {
	tokens := httpedge.NewTokens(adminToken, readOnlyToken)
	for auth, want := range map[string]httpedge.Access{
		"":                        httpedge.NoAccess,
		"Bearer nope":             httpedge.NoAccess,
		"Bearer " + readOnlyToken: httpedge.ReadOnly,
		"Bearer " + adminToken:    httpedge.Admin,
	} {
		r := httptest.NewRequest("GET", "/readyz", nil)
		r.Header.Set("Authorization", auth)
		if got := tokens.Authorize(r); got != want {
			t.Errorf("%q: %v, want %v", auth, got, want)
		}
	}
}
