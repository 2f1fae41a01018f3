package wechattest

import (
	"net/url"
	"testing"
	"time"
)

func TestTokenEndpointsRejectBadCredentials(t *testing.T) {
	f := newFake(t, nil)
	good := url.Values{"grant_type": {"client_credential"}, "appid": {testAppID}, "secret": {testSecret}}
	with := func(k, v string) url.Values {
		q := url.Values{}
		for kk, vv := range good {
			q[kk] = vv
		}
		q.Set(k, v)
		return q
	}
	stable := func(k, v string) map[string]any {
		req := map[string]any{"grant_type": "client_credential", "appid": testAppID, "secret": testSecret}
		req[k] = v
		return req
	}
	tests := []struct {
		name string
		call func() map[string]any
		want int
	}{
		{"token with a wrong secret is 40001, like a bad token", func() map[string]any { return f.get(MethodToken, with("secret", "x"), false) }, CodeInvalidCredential},
		{"token with a wrong appid is 40013", func() map[string]any { return f.get(MethodToken, with("appid", "wx0"), false) }, CodeInvalidAppID},
		{"token with a wrong grant_type is 40002", func() map[string]any { return f.get(MethodToken, with("grant_type", "password"), false) }, CodeInvalidGrantType},
		{"stable_token with a wrong secret is 40125", func() map[string]any { return f.post(MethodStableToken, url.Values{}, stable("secret", "x")) }, CodeInvalidAppSecret},
		{"stable_token with a wrong appid is 40013", func() map[string]any { return f.post(MethodStableToken, url.Values{}, stable("appid", "wx0")) }, CodeInvalidAppID},
		{"stable_token with a wrong grant_type is 40002", func() map[string]any { return f.post(MethodStableToken, url.Values{}, stable("grant_type", "x")) }, CodeInvalidGrantType},
		{"a call without access_token is 41001", func() map[string]any { return f.get(MethodKFList, nil, false) }, CodeMissingAccessToken},
		{"a call with an unknown access_token is 40001", func() map[string]any {
			return f.get(MethodKFList, url.Values{"access_token": {"nope"}}, false)
		}, CodeInvalidCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errcode(tt.call()); got != tt.want {
				t.Fatalf("errcode = %d, want %d", got, tt.want)
			}
		})
	}
}

// probe calls getkflist with tok and returns the errcode.
func (f *fake) probe(tok string) int {
	f.t.Helper()
	return errcode(f.get(MethodKFList, url.Values{"access_token": {tok}}, false))
}

func (f *fake) stableToken(force bool) (string, int) {
	f.t.Helper()
	resp := f.post(MethodStableToken, url.Values{}, map[string]any{
		"grant_type": "client_credential", "appid": testAppID, "secret": testSecret, "force_refresh": force,
	})
	tok, _ := resp["access_token"].(string)
	exp, _ := resp["expires_in"].(float64)
	if tok == "" {
		f.t.Fatalf("stable_token: %v", resp)
	}
	return tok, int(exp)
}

func TestTokenLifecycle(t *testing.T) {
	t.Run("a token works for its lifetime and then answers 42001", func(t *testing.T) {
		f := newFake(t, func(c *Config) { c.TokenLifetime = time.Hour })
		f.clock.Advance(time.Hour - time.Second)
		if got := f.probe(f.token); got != 0 {
			t.Fatalf("before expiry: errcode %d", got)
		}
		f.clock.Advance(time.Second)
		if got := f.probe(f.token); got != CodeAccessTokenExpired {
			t.Fatalf("after expiry: errcode %d, want 42001", got)
		}
	})
	t.Run("a new cgi-bin/token leaves the previous one five minutes, then 40001", func(t *testing.T) {
		f := newFake(t, nil)
		old := f.token
		newer := f.fetchToken()
		if newer == old {
			t.Fatal("cgi-bin/token returned the same token twice")
		}
		f.clock.Advance(5*time.Minute - time.Second)
		if got := f.probe(old); got != 0 {
			t.Fatalf("old token within grace: errcode %d", got)
		}
		f.clock.Advance(time.Second)
		if got := f.probe(old); got != CodeInvalidCredential {
			t.Fatalf("old token after grace: errcode %d, want 40001", got)
		}
		if got := f.probe(newer); got != 0 {
			t.Fatalf("new token: errcode %d", got)
		}
	})
	t.Run("stable_token returns the same token and a shrinking expires_in", func(t *testing.T) {
		f := newFake(t, nil)
		a, expA := f.stableToken(false)
		f.clock.Advance(10 * time.Minute)
		b, expB := f.stableToken(false)
		if a != b {
			t.Fatal("normal-mode stable_token changed the token")
		}
		if expA != 7200 || expB != 7200-600 {
			t.Fatalf("expires_in = %d then %d, want 7200 then 6600", expA, expB)
		}
	})
	t.Run("stable_token hands out the next token in the last five minutes, the old one still working", func(t *testing.T) {
		f := newFake(t, nil)
		a, _ := f.stableToken(false)
		f.clock.Advance(7200*time.Second - 4*time.Minute)
		b, _ := f.stableToken(false)
		if a == b {
			t.Fatal("no new token in the last five minutes")
		}
		if got := f.probe(a); got != 0 {
			t.Fatalf("old stable token before its expiry: errcode %d", got)
		}
	})
	t.Run("force_refresh makes the previous stable token answer 40001 at once", func(t *testing.T) {
		f := newFake(t, nil)
		a, _ := f.stableToken(false)
		b, _ := f.stableToken(true)
		if a == b {
			t.Fatal("force_refresh returned the same token")
		}
		if got := f.probe(a); got != CodeInvalidCredential {
			t.Fatalf("previous token: errcode %d, want 40001", got)
		}
		if got := f.probe(b); got != 0 {
			t.Fatalf("new token: errcode %d", got)
		}
	})
	t.Run("stable and cgi-bin tokens do not invalidate each other", func(t *testing.T) {
		f := newFake(t, nil)
		st, _ := f.stableToken(false)
		f.fetchToken()
		f.clock.Advance(time.Hour)
		if got := f.probe(st); got != 0 {
			t.Fatalf("stable token after cgi-bin/token: errcode %d", got)
		}
	})
	t.Run("ExpireTokens makes every token 42001 and stable_token issues a new one", func(t *testing.T) {
		f := newFake(t, nil)
		st, _ := f.stableToken(false)
		f.srv.ExpireTokens()
		for _, tok := range []string{f.token, st} {
			if got := f.probe(tok); got != CodeAccessTokenExpired {
				t.Fatalf("errcode %d, want 42001", got)
			}
		}
		next, _ := f.stableToken(false)
		if next == st || f.probe(next) != 0 {
			t.Fatal("stable_token did not issue a working new token after ExpireTokens")
		}
	})
	t.Run("InvalidateTokens makes every token 40001", func(t *testing.T) {
		f := newFake(t, nil)
		f.srv.InvalidateTokens()
		if got := f.probe(f.token); got != CodeInvalidCredential {
			t.Fatalf("errcode %d, want 40001", got)
		}
	})
	t.Run("TokenFetches counts every token handed out", func(t *testing.T) {
		f := newFake(t, nil) // one cgi-bin/token fetch
		f.stableToken(false)
		f.stableToken(false)
		f.stableToken(true)
		if got := f.srv.TokenFetches(); got != 4 {
			t.Fatalf("TokenFetches = %d, want 4", got)
		}
		if got := f.srv.CallCount(MethodStableToken); got != 3 {
			t.Fatalf("CallCount(stable_token) = %d, want 3", got)
		}
	})
}
