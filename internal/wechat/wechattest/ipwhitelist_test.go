package wechattest

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestIPWhitelistRefusesOtherCallersWith40164NamingThem(t *testing.T) {
	f := newFake(t, nil)
	creds := map[string]any{"grant_type": "client_credential", "appid": testAppID, "secret": testSecret}

	if err := f.srv.SetIPWhitelist([]string{"203.0.113.7"}); err != nil {
		t.Fatal(err)
	}
	m := f.post(MethodStableToken, nil, creds)
	if errcode(m) != CodeIPNotWhitelisted {
		t.Fatalf("stable_token from 127.0.0.1 with only 203.0.113.7 whitelisted: %v, want 40164", m)
	}
	if msg, _ := m["errmsg"].(string); !strings.HasPrefix(msg, "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist") {
		t.Fatalf("errmsg %q does not name the caller the way WeChat does", msg)
	}
	if m := f.get(MethodKFList, nil, true); errcode(m) != CodeIPNotWhitelisted {
		t.Fatalf("getkflist from a refused address: %v, want 40164", m)
	}

	// The caller on the list, then no list at all, are served again.
	if err := f.srv.SetIPWhitelist([]string{"203.0.113.7", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	f.mustOK(f.post(MethodStableToken, nil, creds))
	if err := f.srv.SetIPWhitelist(nil); err != nil {
		t.Fatal(err)
	}
	f.mustOK(f.get(MethodKFList, nil, true))

	if err := f.srv.SetIPWhitelist([]string{"not-an-ip"}); err == nil {
		t.Fatal("SetIPWhitelist accepted a name that is not an address")
	}
}

func TestIPWhitelistControlAndInjected40164(t *testing.T) {
	f := newFake(t, nil)
	resp, err := http.Post(f.http.URL+"/_control/ipwhitelist", "application/json", bytes.NewBufferString(`{"ip_list":["198.51.100.1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /_control/ipwhitelist: %s", resp.Status)
	}
	if m := f.get(MethodKFList, nil, true); errcode(m) != CodeIPNotWhitelisted {
		t.Fatalf("after /_control/ipwhitelist: %v, want 40164", m)
	}
	f.srv.SetIPWhitelist(nil)

	// An injected 40164 carries the caller's address too.
	f.srv.InjectErrors(MethodKFList, CodeIPNotWhitelisted, 1)
	m := f.get(MethodKFList, url.Values{}, true)
	if msg, _ := m["errmsg"].(string); errcode(m) != CodeIPNotWhitelisted || !strings.Contains(msg, "invalid ip 127.0.0.1") {
		t.Fatalf("injected 40164: %v", m)
	}
	f.mustOK(f.get(MethodKFList, nil, true))
}
