package kfadmin_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/httpedge"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

const (
	adminToken    = "s3cret-admin-token"
	readOnlyToken = "s3cret-read-only-token"
)

type apiClient struct {
	t    *testing.T
	base string
}

func newAPI(t *testing.T, deps kfadmin.Deps) *apiClient {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/api/kf/", kfadmin.NewHTTPHandler(httpedge.NewTokens(adminToken, readOnlyToken), deps, nil))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &apiClient{t: t, base: hs.URL}
}

// do sends a request with the admin token; body is JSON-encoded unless it
// is a string or []byte.
func (c *apiClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	return c.send(req)
}

func (c *apiClient) send(req *http.Request) (int, map[string]any) {
	c.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if resp.StatusCode >= 400 {
		httpapitest.CheckProblem(c.t, resp.StatusCode, resp.Header, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct == "application/json; charset=utf-8" || ct == httpapi.ContentTypeProblem {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: bad JSON %q", req.Method, req.URL.Path, raw)
		}
	}
	return resp.StatusCode, out
}

// avatar uploads a JPEG of size bytes.
func (c *apiClient) avatar(account string, size int) (int, map[string]any) {
	c.t.Helper()
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("media", "a.jpg")
	img := make([]byte, size)
	copy(img, []byte{0xFF, 0xD8, 0xFF, 0xE0})
	fw.Write(img)
	mw.Close()
	req, _ := http.NewRequest("POST", c.base+"/api/kf/accounts/"+account+"/avatar", &mp)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return c.send(req)
}

func TestAdminAPIAuth(t *testing.T) {
	e := newEnv(t, true)
	api := newAPI(t, e.deps())
	tests := []struct {
		name, method, path, header string
		status                     int
		challenge                  string
	}{
		{"no Authorization header", "GET", "/api/kf/online", "", 401, `Bearer realm="kefu"`},
		{"another scheme", "GET", "/api/kf/online", "Basic " + adminToken, 401, `Bearer realm="kefu"`},
		{"a wrong token", "GET", "/api/kf/online", "Bearer wrong", 401, `Bearer realm="kefu", error="invalid_token"`},
		{"a token that is a prefix of the right one", "GET", "/api/kf/online", "Bearer " + adminToken[:5], 401, `Bearer realm="kefu", error="invalid_token"`},
		{"the read-only token may not add an account", "POST", "/api/kf/accounts", "Bearer " + readOnlyToken, 403, `Bearer realm="kefu", error="insufficient_scope"`},
		{"the read-only token may not create a group", "POST", "/api/kf/groups", "Bearer " + readOnlyToken, 403, `Bearer realm="kefu", error="insufficient_scope"`},
		{"the read-only token may list accounts", "GET", "/api/kf/accounts", "Bearer " + readOnlyToken, 200, ""},
		{"the admin token", "GET", "/api/kf/online", "Bearer " + adminToken, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.NewReader(`{"kf_account":"mallory@test","nickname":"M","name":"g"}`)
			req, _ := http.NewRequest(tt.method, api.base+tt.path, body)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("WWW-Authenticate") != tt.challenge {
				t.Fatalf("%d %q; want %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tt.status, tt.challenge)
			}
		})
	}
	if n := e.fake.CallCount(wechattest.MethodKFOnlineList); n != 1 {
		t.Errorf("getonlinekflist called %d times; only the admin token's request may reach WeChat", n)
	}
	if n := e.fake.CallCount(wechattest.MethodKFAdd); n != 0 {
		t.Errorf("kfaccount/add called %d times by the read-only token", n)
	}
	if status, body := api.do("GET", "/api/kf/groups", nil); status != 200 || len(body["groups"].([]any)) != 0 {
		t.Errorf("a group was created by the read-only token: %d %v", status, body)
	}

	// Without a token nothing is served, not even to an empty bearer.
	open := httptest.NewServer(kfadmin.NewHTTPHandler(httpedge.NewTokens("", ""), e.deps(), nil))
	defer open.Close()
	for _, h := range []string{"", "Bearer ", "Bearer x", "Bearer " + adminToken} {
		req, _ := http.NewRequest("GET", open.URL+"/api/kf/online", nil)
		req.Header.Set("Authorization", h)
		resp, _ := http.DefaultClient.Do(req)
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("no token configured, Authorization %q: %d", h, resp.StatusCode)
		}
	}
}

func TestAdminAPIAccountsAndSessions(t *testing.T) {
	e := newEnv(t, true)
	api := newAPI(t, e.deps())

	status, body := api.do("POST", "/api/kf/accounts", map[string]string{"kf_account": "alice@test", "nickname": "Alice", "password": "pw"})
	if status != 201 || body["action"] != "account.added" {
		t.Fatalf("add: %d %v", status, body)
	}
	var sent map[string]string
	json.Unmarshal(e.body("customservice/kfaccount/add"), &sent)
	if sent["password"] != wechat.PasswordMD5("pw") {
		t.Errorf("password sent as %q, want its MD5", sent["password"])
	}
	if status, body = api.do("PUT", "/api/kf/accounts/alice@test", map[string]string{"nickname": "Alice W"}); status != 200 {
		t.Fatalf("update: %d %v", status, body)
	}
	status, body = api.do("GET", "/api/kf/accounts", nil)
	list, _ := body["kf_list"].([]any)
	if status != 200 || len(list) != 1 || list[0].(map[string]any)["kf_nick"] != "Alice W" {
		t.Fatalf("list: %d %v", status, body)
	}

	if status, body := api.avatar("alice@test", 64); status != 200 || !agentState(t, e, "alice@test").HasHeadImg {
		t.Fatalf("avatar: %d %v", status, body)
	}

	// Sessions: by group, picking the idle member.
	e.agent("bob@test", wechattest.StatusPC, 5)
	e.fake.SetAgentStatus("alice@test", wechattest.StatusPC)
	e.serve("alice@test", "o1")
	e.customer("o2")
	if status, body := api.do("POST", "/api/kf/groups", map[string]any{"name": "sales", "members": []string{"alice@test", "bob@test"}}); status != 201 {
		t.Fatalf("create group: %d %v", status, body)
	}
	status, body = api.do("POST", "/api/kf/sessions", map[string]string{"openid": "o2", "group": "sales", "text": "from the API"})
	if status != 201 || body["kf_account"] != "bob@test" || body["picked"] == nil {
		t.Fatalf("create session by group: %d %v", status, body)
	}
	status, body = api.do("GET", "/api/kf/sessions/o2", nil)
	if status != 200 || body["kf_account"] != "bob@test" {
		t.Fatalf("get session: %d %v", status, body)
	}
	status, body = api.do("GET", "/api/kf/sessions?kf=bob@test", nil)
	if sl, _ := body["sessionlist"].([]any); status != 200 || len(sl) != 1 {
		t.Fatalf("session list: %d %v", status, body)
	}
	if status, body = api.do("POST", "/api/kf/sessions/close", map[string]string{"openid": "o2", "kf": "bob@test"}); status != 200 {
		t.Fatalf("close: %d %v", status, body)
	}
	status, body = api.do("GET", "/api/kf/waiting", nil)
	if status != 200 || body["count"] != float64(0) {
		t.Fatalf("waiting: %d %v", status, body)
	}
	if status, body = api.do("DELETE", "/api/kf/accounts/bob@test", nil); status != 200 || body["action"] != "account.deleted" {
		t.Fatalf("delete: %d %v", status, body)
	}
}

func TestAdminAPIGroups(t *testing.T) {
	e := newEnv(t, true)
	api := newAPI(t, e.deps())
	e.agent("a@test", wechattest.StatusOffline, 0)
	e.agent("b@test", wechattest.StatusOffline, 0)
	if status, body := api.do("POST", "/api/kf/groups", map[string]any{"name": "billing", "keywords": []string{"refund"}}); status != 201 || body["name"] != "billing" {
		t.Fatalf("create: %d %v", status, body)
	}
	if status, body := api.do("POST", "/api/kf/groups/billing/members", map[string]any{"members": []string{"b@test", "a@test"}}); status != 200 || len(body["members"].([]any)) != 2 {
		t.Fatalf("add members: %d %v", status, body)
	}
	if status, body := api.do("DELETE", "/api/kf/groups/billing/members/b@test", nil); status != 200 || len(body["members"].([]any)) != 1 {
		t.Fatalf("remove member: %d %v", status, body)
	}
	if status, body := api.do("PUT", "/api/kf/groups/billing/keywords", map[string]any{"keywords": []string{"发票", "refund"}}); status != 200 || len(body["keywords"].([]any)) != 2 {
		t.Fatalf("keywords: %d %v", status, body)
	}
	status, body := api.do("GET", "/api/kf/groups", nil)
	if gl, _ := body["groups"].([]any); status != 200 || len(gl) != 1 {
		t.Fatalf("list: %d %v", status, body)
	}
	if status, body := api.do("GET", "/api/kf/groups/billing", nil); status != 200 || body["members"].([]any)[0] != "a@test" {
		t.Fatalf("get: %d %v", status, body)
	}
	if status, _ := api.do("DELETE", "/api/kf/groups/billing", nil); status != 200 {
		t.Fatalf("delete: %d", status)
	}
	if status, _ := api.do("GET", "/api/kf/groups/billing", nil); status != 404 {
		t.Fatalf("get after delete: %d", status)
	}
}

func TestAdminAPIErrors(t *testing.T) {
	e := newEnv(t, true)
	e.agent("alice@test", wechattest.StatusPC, 1)
	e.agent("dave@test", wechattest.StatusOffline, 0)
	api := newAPI(t, e.deps())
	api.do("POST", "/api/kf/groups", map[string]any{"name": "night", "members": []string{"dave@test"}})
	e.customer("o1")
	tests := []struct {
		name, method, path string
		body               any
		status             int
		errcode            int // WeChat's, 0 for none
	}{
		{"malformed JSON", "POST", "/api/kf/accounts", `{"kf_account":`, 400, 0},
		{"an unknown field", "POST", "/api/kf/accounts", `{"kf_account":"x@test","nick":"X"}`, 400, 0},
		{"two JSON values", "POST", "/api/kf/groups", `{"name":"a"}{"name":"b"}`, 400, 0},
		{"a body over 1 MiB", "POST", "/api/kf/groups", `{"name":"` + strings.Repeat("a", 1<<20) + `"}`, 413, 0},
		{"a missing nickname", "POST", "/api/kf/accounts", map[string]string{"kf_account": "x@test"}, 400, 0},
		{"a malformed account", "DELETE", "/api/kf/accounts/alice", nil, 400, 0},
		{"a bad group name", "POST", "/api/kf/groups", map[string]string{"name": "a.b"}, 400, 0},
		{"session with both kf and group", "POST", "/api/kf/sessions", map[string]string{"openid": "o1", "kf": "alice@test", "group": "night"}, 400, 0},
		{"session list without kf", "GET", "/api/kf/sessions", nil, 400, 0},
		{"an unknown group", "GET", "/api/kf/groups/ghost", nil, 404, 0},
		{"a group that exists", "POST", "/api/kf/groups", map[string]string{"name": "night"}, 409, 0},
		{"a member that is no kf account", "POST", "/api/kf/groups/night/members", map[string]any{"members": []string{"ghost@test"}}, 400, 0},
		{"an invitation without invite_wx", "POST", "/api/kf/accounts/alice@test/invite", map[string]string{}, 400, 0},
		{"WeChat refuses: invitation to an unknown account", "POST", "/api/kf/accounts/ghost@test/invite", map[string]string{"invite_wx": "ghost_wx1"}, 502, wechattest.CodeInvalidKFAccount},
		{"nobody of the group online", "POST", "/api/kf/sessions", map[string]string{"openid": "o1", "group": "night"}, 409, 0},
		{"wrong method", "DELETE", "/api/kf/online", nil, 405, 0},
		{"unknown path", "GET", "/api/kf/nothing", nil, 404, 0},
		{"WeChat refuses: account exists", "POST", "/api/kf/accounts", map[string]string{"kf_account": "alice@test", "nickname": "A"}, 502, wechattest.CodeKFAccountExists},
		{"WeChat refuses: no session", "POST", "/api/kf/sessions/close", map[string]string{"openid": "o1", "kf_account": "alice@test"}, 502, wechattest.CodeNoSession},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := api.do(tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Fatalf("status %d %v, want %d", status, body, tt.status)
			}
			if status >= 400 {
				if msg, _ := body["detail"].(string); msg == "" || body["error"] != msg {
					t.Errorf("no detail, or error differs from it, in %v", body)
				}
				wantType := "about:blank"
				switch {
				case tt.errcode != 0:
					wantType = httpapi.WeChatRefused.URI()
				case status == 400:
					wantType = httpapi.InvalidParameter.URI()
				}
				if body["type"] != wantType {
					t.Errorf("type %v, want %s", body["type"], wantType)
				}
			}
			if got, _ := body["errcode"].(float64); int(got) != tt.errcode {
				t.Errorf("errcode %v, want %d", body["errcode"], tt.errcode)
			}
			if tt.errcode != 0 && body["errmsg"] == "" {
				t.Errorf("no errmsg in %v", body)
			}
		})
	}

	e.fake.InjectErrors(wechattest.MethodKFOnlineList, wechattest.CodeKFUnavailable, 1)
	if status, body := api.do("GET", "/api/kf/online", nil); status != 502 || body["errcode"] != float64(65400) {
		t.Errorf("injected 65400: %d %v", status, body)
	}

	// An avatar may be larger than 1 MiB, up to WeChat's 5 MiB.
	if status, body := api.avatar("alice@test", 6<<20); status != 413 {
		t.Errorf("6 MiB avatar: %d %v", status, body)
	}
	if status, body := api.avatar("alice@test", 2<<20); status != 200 {
		t.Errorf("2 MiB avatar: %d %v", status, body)
	}
	if status, _ := api.do("POST", "/api/kf/accounts/alice@test/avatar", map[string]string{"media": "x"}); status != 400 {
		t.Errorf("avatar as JSON: %d, want 400", status)
	}

	noNATS := newAPI(t, kfadmin.Deps{Client: e.client})
	if status, body := noNATS.do("GET", "/api/kf/groups", nil); status != 503 || !strings.Contains(body["error"].(string), "KEFU_NATS_URL") {
		t.Errorf("groups without NATS: %d %v", status, body)
	}
}
