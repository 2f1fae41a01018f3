package wechattest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	testAppID  = "wx2c2769f8efd9abc2"
	testSecret = "s3cr3t"
	testToken  = "spamtest"
	testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

var testStart = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// fake is a running fake server with a fake clock and a token ready.
type fake struct {
	t     *testing.T
	srv   *Server
	http  *httptest.Server
	clock *FakeClock
	token string
}

// newFake starts a fake; edit adjusts the config before New.
func newFake(t *testing.T, edit func(*Config)) *fake {
	t.Helper()
	clock := NewFakeClock(testStart)
	cfg := Config{
		AppID: testAppID, AppSecret: testSecret, Token: testToken, EncodingAESKey: testAESKey,
		Clock: clock, CallbackRetryDelay: time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	f := &fake{t: t, srv: srv, http: hs, clock: clock}
	f.token = f.fetchToken()
	return f
}

func (f *fake) fetchToken() string {
	f.t.Helper()
	resp := f.get(MethodToken, url.Values{"grant_type": {"client_credential"}, "appid": {testAppID}, "secret": {testSecret}}, false)
	tok, _ := resp["access_token"].(string)
	if tok == "" {
		f.t.Fatalf("fetch token: %v", resp)
	}
	return tok
}

// get calls a GET method, with the access token when withToken.
func (f *fake) get(method string, q url.Values, withToken bool) map[string]any {
	f.t.Helper()
	if q == nil {
		q = url.Values{}
	}
	if withToken {
		q.Set("access_token", f.token)
	}
	resp, err := http.Get(f.http.URL + "/" + method + "?" + q.Encode())
	if err != nil {
		f.t.Fatalf("GET %s: %v", method, err)
	}
	return decodeResponse(f.t, resp)
}

// post calls a POST method with a JSON body and the current access token.
func (f *fake) post(method string, q url.Values, body any) map[string]any {
	f.t.Helper()
	if q == nil {
		q = url.Values{}
	}
	if _, ok := q["access_token"]; !ok {
		q.Set("access_token", f.token)
	}
	b, err := json.Marshal(body)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.Post(f.http.URL+"/"+method+"?"+q.Encode(), "application/json", bytes.NewReader(b))
	if err != nil {
		f.t.Fatalf("POST %s: %v", method, err)
	}
	return decodeResponse(f.t, resp)
}

// postRaw posts body as it is, with the current access token.
func (f *fake) postRaw(method, body string) map[string]any {
	f.t.Helper()
	q := url.Values{"access_token": {f.token}}
	resp, err := http.Post(f.http.URL+"/"+method+"?"+q.Encode(), "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatalf("POST %s: %v", method, err)
	}
	return decodeResponse(f.t, resp)
}

func decodeResponse(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// errcode reads errcode from a response (0 when absent, as on success).
func errcode(m map[string]any) int {
	v, _ := m["errcode"].(float64)
	return int(v)
}

// mustOK fails unless the response has no error.
func (f *fake) mustOK(m map[string]any) {
	f.t.Helper()
	if c := errcode(m); c != 0 {
		f.t.Fatalf("errcode %d: %v", c, m["errmsg"])
	}
}

// agent creates an online agent through the control methods.
func (f *fake) agent(account string, autoAccept int) {
	f.t.Helper()
	if err := f.srv.AddAgent(account, "nick-"+account[:1]); err != nil {
		f.t.Fatal(err)
	}
	if err := f.srv.SetAutoAccept(account, autoAccept); err != nil {
		f.t.Fatal(err)
	}
	if err := f.srv.SetAgentStatus(account, StatusPC); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fake) transfer(openid, account string) {
	f.t.Helper()
	if err := f.srv.TransferToQueue(openid, account); err != nil {
		f.t.Fatal(err)
	}
}

// servedBy maps openid → agent from a snapshot.
func servedBy(st State) map[string]string {
	m := map[string]string{}
	for _, s := range st.Sessions {
		m[s.OpenID] = s.KfAccount
	}
	return m
}

func waitingIDs(st State) []string {
	var ids []string
	for _, w := range st.Waiting {
		ids = append(ids, w.OpenID)
	}
	return ids
}

// jsonString re-encodes a decoded response, keys sorted, for comparison.
func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
