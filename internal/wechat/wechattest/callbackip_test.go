package wechattest

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
)

func ipList(t *testing.T, resp map[string]any) []string {
	t.Helper()
	raw, ok := resp["ip_list"].([]any)
	if !ok {
		t.Fatalf("no ip_list in %v", resp)
	}
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i] = fmt.Sprint(v)
	}
	return out
}

// getcallbackip answers the settable list, needs a valid token like every
// API method, and the control API reads and replaces the list.
func TestCallbackIPList(t *testing.T) {
	f := newFake(t, nil)
	got := ipList(t, f.get(MethodCallbackIP, nil, true))
	if !slices.Equal(got, DefaultCallbackIPs) || !slices.Contains(got, "127.0.0.1") || !slices.Contains(got, "::1") {
		t.Fatalf("default list %v", got)
	}
	if resp := f.get(MethodCallbackIP, url.Values{"access_token": {"not-a-token"}}, false); resp["errcode"] != float64(CodeInvalidCredential) {
		t.Fatalf("bad token: %v", resp)
	}
	if resp := f.get(MethodCallbackIP, nil, false); resp["errcode"] != float64(CodeMissingAccessToken) {
		t.Fatalf("no token: %v", resp)
	}

	if status, body := f.control("POST", "/_control/callbackip", `{"ip_list":["10.0.0.0/8","192.0.2.1"]}`); status != 200 {
		t.Fatalf("set list: %d %v", status, body)
	}
	if got := ipList(t, f.get(MethodCallbackIP, nil, true)); !slices.Equal(got, []string{"10.0.0.0/8", "192.0.2.1"}) {
		t.Fatalf("list after set: %v", got)
	}
	if status, body := f.control("GET", "/_control/callbackip", ""); status != 200 || len(ipList(t, body)) != 2 {
		t.Fatalf("control read: %d %v", status, body)
	}
	if status, _ := f.control("POST", "/_control/callbackip", `{"ip_list":["10.0.0.0/33"]}`); status != 400 {
		t.Fatalf("a malformed entry: HTTP %d, want 400", status)
	}
	if got := f.srv.CallbackIPs(); !slices.Equal(got, []string{"10.0.0.0/8", "192.0.2.1"}) {
		t.Fatalf("a refused update changed the list: %v", got)
	}
}
