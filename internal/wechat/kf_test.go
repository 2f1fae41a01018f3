package wechat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/wechat"
)

func TestPasswordMD5MatchesTheDocumentedExample(t *testing.T) {
	// The example password hash of WeChat's 多客服 API documentation is md5("111111").
	if got, want := wechat.PasswordMD5("111111"), "96e79218965eb72c92a549dd5a330112"; got != want {
		t.Fatalf("PasswordMD5 = %s, want %s", got, want)
	}
}

// TestClientRequestsAndDecoding checks, for every endpoint, the request the
// client sends (method, path, query, JSON body) and how it decodes the answer.
func TestClientRequestsAndDecoding(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name      string
		call      func(c *wechat.Client) (any, error)
		reply     string
		method    string
		path      string
		query     url.Values // besides access_token
		body      string     // JSON, compared structurally; "" = no body
		rawBody   []string   // substrings the raw body must contain
		want      any
		wantNoKey string // a key the JSON body must not have
	}{
		{
			name: "add kf account posts the md5 of the clear password",
			call: func(c *wechat.Client) (any, error) {
				return nil, c.AddKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1@test", Nickname: "客服1", Password: "111111"})
			},
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodPost, path: "/customservice/kfaccount/add",
			body: `{"kf_account":"test1@test","nickname":"客服1","password":"96e79218965eb72c92a549dd5a330112"}`,
		},
		{
			name: "add kf account without a password sends no password field",
			call: func(c *wechat.Client) (any, error) {
				return nil, c.AddKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1@test", Nickname: "客服1"})
			},
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodPost, path: "/customservice/kfaccount/add",
			body:      `{"kf_account":"test1@test","nickname":"客服1"}`,
			wantNoKey: "password",
		},
		{
			name: "update kf account posts to kfaccount/update",
			call: func(c *wechat.Client) (any, error) {
				return nil, c.UpdateKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1@test", Nickname: "客服一", Password: "pw"})
			},
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodPost, path: "/customservice/kfaccount/update",
			body: `{"kf_account":"test1@test","nickname":"客服一","password":"` + wechat.PasswordMD5("pw") + `"}`,
		},
		{
			name:   "delete kf account is a GET with kf_account in the query",
			call:   func(c *wechat.Client) (any, error) { return nil, c.DeleteKfAccount(ctx, "test1@test") },
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodGet, path: "/customservice/kfaccount/del",
			query: url.Values{"kf_account": {"test1@test"}},
		},
		{
			name:   "getkflist lives under cgi-bin and accepts kf_id as string or number",
			call:   func(c *wechat.Client) (any, error) { return c.GetKfList(ctx) },
			reply:  `{"kf_list":[{"kf_account":"test1@test","kf_nick":"ntest1","kf_id":"1001","kf_headimgurl":"http://mmbiz.qpic.cn/1"},{"kf_account":"test2@test","kf_nick":"ntest2","kf_id":1002,"kf_headimgurl":"","kf_wx":"kfwx2","invite_wx":"inv","invite_expire_time":123,"invite_status":"waiting"}]}`,
			method: http.MethodGet, path: "/cgi-bin/customservice/getkflist",
			want: []wechat.KfInfo{
				{KfAccount: "test1@test", KfNick: "ntest1", KfID: "1001", KfHeadImgURL: "http://mmbiz.qpic.cn/1"},
				{KfAccount: "test2@test", KfNick: "ntest2", KfID: "1002", KfWx: "kfwx2", InviteWx: "inv", InviteExpireTime: 123, InviteStatus: "waiting"},
			},
		},
		{
			name:   "getonlinekflist decodes the documented example",
			call:   func(c *wechat.Client) (any, error) { return c.GetOnlineKfList(ctx) },
			reply:  `{"kf_online_list":[{"kf_account":"test1@test","status":1,"kf_id":"1001","auto_accept":0,"accepted_case":1},{"kf_account":"test2@test","status":3,"kf_id":"1002","auto_accept":5,"accepted_case":2}]}`,
			method: http.MethodGet, path: "/cgi-bin/customservice/getonlinekflist",
			want: []wechat.OnlineKf{
				{KfAccount: "test1@test", Status: 1, KfID: "1001", AutoAccept: 0, AcceptedCase: 1},
				{KfAccount: "test2@test", Status: 3, KfID: "1002", AutoAccept: 5, AcceptedCase: 2},
			},
		},
		{
			name:   "empty online list decodes to an empty slice",
			call:   func(c *wechat.Client) (any, error) { return c.GetOnlineKfList(ctx) },
			reply:  `{"kf_online_list":[]}`,
			method: http.MethodGet, path: "/cgi-bin/customservice/getonlinekflist",
			want: []wechat.OnlineKf{},
		},
		{
			name: "create session posts kf_account, openid and text",
			call: func(c *wechat.Client) (any, error) {
				return nil, c.CreateSession(ctx, "test1@test", "OPENID", "这是一段附加信息")
			},
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodPost, path: "/customservice/kfsession/create",
			body: `{"kf_account":"test1@test","openid":"OPENID","text":"这是一段附加信息"}`,
		},
		{
			name:   "close session posts to kfsession/close",
			call:   func(c *wechat.Client) (any, error) { return nil, c.CloseSession(ctx, "test1@test", "OPENID", "bye") },
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodPost, path: "/customservice/kfsession/close",
			body: `{"kf_account":"test1@test","openid":"OPENID","text":"bye"}`,
		},
		{
			name:   "getsession passes openid and decodes createtime and kf_account",
			call:   func(c *wechat.Client) (any, error) { return c.GetSession(ctx, "OPENID") },
			reply:  `{"createtime":123456789,"errcode":0,"errmsg":"ok","kf_account":"test1@test"}`,
			method: http.MethodGet, path: "/customservice/kfsession/getsession",
			query: url.Values{"openid": {"OPENID"}},
			want:  wechat.SessionInfo{KfAccount: "test1@test", CreateTime: 123456789},
		},
		{
			name:   "getsession with nobody serving has an empty kf_account",
			call:   func(c *wechat.Client) (any, error) { return c.GetSession(ctx, "OPENID") },
			reply:  `{"createtime":0,"errcode":0,"errmsg":"ok","kf_account":""}`,
			method: http.MethodGet, path: "/customservice/kfsession/getsession",
			query: url.Values{"openid": {"OPENID"}},
			want:  wechat.SessionInfo{},
		},
		{
			name:   "getwaitcase reads createtime and keeps a count above the listed cases",
			call:   func(c *wechat.Client) (any, error) { return c.GetWaitCase(ctx) },
			reply:  `{"count":150,"waitcaselist":[{"createtime":123456789,"kf_account":"test1@test","openid":"OPENID1"},{"createtime":123456790,"kf_account":"","openid":"OPENID2"}]}`,
			method: http.MethodGet, path: "/customservice/kfsession/getwaitcase",
			want: wechat.WaitCases{Count: 150, Cases: []wechat.WaitCase{
				{OpenID: "OPENID1", KfAccount: "test1@test", CreateTime: 123456789},
				{OpenID: "OPENID2", CreateTime: 123456790},
			}},
		},
		{
			name:   "getwaitcase reads latest_time when createtime is absent",
			call:   func(c *wechat.Client) (any, error) { return c.GetWaitCase(ctx) },
			reply:  `{"count":2,"waitcaselist":[{"latest_time":1500000000,"kf_account":"","openid":"OPENID1"},{"latest_time":1500000009,"openid":"OPENID2"}]}`,
			method: http.MethodGet, path: "/customservice/kfsession/getwaitcase",
			want: wechat.WaitCases{Count: 2, Cases: []wechat.WaitCase{
				{OpenID: "OPENID1", CreateTime: 1500000000},
				{OpenID: "OPENID2", CreateTime: 1500000009},
			}},
		},
		{
			name:   "getwaitcase count is never below the listed cases",
			call:   func(c *wechat.Client) (any, error) { return c.GetWaitCase(ctx) },
			reply:  `{"waitcaselist":[{"createtime":1,"openid":"OPENID1"}]}`,
			method: http.MethodGet, path: "/customservice/kfsession/getwaitcase",
			want: wechat.WaitCases{Count: 1, Cases: []wechat.WaitCase{{OpenID: "OPENID1", CreateTime: 1}}},
		},
		{
			name:   "getsessionlist passes kf_account and decodes the list",
			call:   func(c *wechat.Client) (any, error) { return c.GetSessionList(ctx, "test1@test") },
			reply:  `{"sessionlist":[{"createtime":123456789,"openid":"OPENID1"},{"createtime":123456790,"openid":"OPENID2"}]}`,
			method: http.MethodGet, path: "/customservice/kfsession/getsessionlist",
			query: url.Values{"kf_account": {"test1@test"}},
			want:  []wechat.SessionItem{{OpenID: "OPENID1", CreateTime: 123456789}, {OpenID: "OPENID2", CreateTime: 123456790}},
		},
		{
			name:   "send text posts a text message without customservice by default",
			call:   func(c *wechat.Client) (any, error) { return nil, c.SendText(ctx, "OPENID", "您好 <b>&", "") },
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodPost, path: "/cgi-bin/message/custom/send",
			body:      `{"touser":"OPENID","msgtype":"text","text":{"content":"您好 <b>&"}}`,
			rawBody:   []string{`<b>&`}, // not escaped to \u003c…\u0026
			wantNoKey: "customservice",
		},
		{
			name:   "send text as an agent adds customservice.kf_account",
			call:   func(c *wechat.Client) (any, error) { return nil, c.SendText(ctx, "OPENID", "hi", "test1@test") },
			reply:  `{"errcode":0,"errmsg":"ok"}`,
			method: http.MethodPost, path: "/cgi-bin/message/custom/send",
			body: `{"touser":"OPENID","msgtype":"text","text":{"content":"hi"},"customservice":{"kf_account":"test1@test"}}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(t, inSequence(apiReply{body: tc.reply}))
			c := newTestClient(t, srv, staticToken("tok-1"), nil)
			got, err := tc.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("requests = %d, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Method != tc.method || req.Path != tc.path {
				t.Errorf("request = %s %s, want %s %s", req.Method, req.Path, tc.method, tc.path)
			}
			query := url.Values{}
			for k, v := range req.Query {
				query[k] = v
			}
			if tok := query.Get("access_token"); tok != "tok-1" {
				t.Errorf("access_token = %q, want tok-1", tok)
			}
			query.Del("access_token")
			wantQuery := tc.query
			if wantQuery == nil {
				wantQuery = url.Values{}
			}
			if !reflect.DeepEqual(query, wantQuery) {
				t.Errorf("query = %v, want %v", query, wantQuery)
			}
			checkJSONBody(t, req, tc.body, tc.wantNoKey)
			for _, s := range tc.rawBody {
				if !bytes.Contains(req.Body, []byte(s)) {
					t.Errorf("raw body %s does not contain %q", req.Body, s)
				}
			}
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("result = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func checkJSONBody(t *testing.T, req apiRequest, want, noKey string) {
	t.Helper()
	if want == "" {
		if len(req.Body) != 0 {
			t.Errorf("unexpected body %s", req.Body)
		}
		return
	}
	if !strings.HasPrefix(req.ContentType, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", req.ContentType)
	}
	var gotV, wantV map[string]any
	if err := json.Unmarshal(req.Body, &gotV); err != nil {
		t.Fatalf("body %s is not JSON: %v", req.Body, err)
	}
	if err := json.Unmarshal([]byte(want), &wantV); err != nil {
		t.Fatalf("bad test JSON: %v", err)
	}
	if !reflect.DeepEqual(gotV, wantV) {
		t.Errorf("body = %s, want %s", req.Body, want)
	}
	if _, ok := gotV[noKey]; noKey != "" && ok {
		t.Errorf("body %s has key %q", req.Body, noKey)
	}
}

func TestUploadKfAvatarSendsMultipartMedia(t *testing.T) {
	jpeg := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte{0x42}, 2048)...)
	srv := newAPIServer(t, inSequence(replyBadToken, replyOK)) // also proves the body survives a retry
	tokens := &rotatingTokens{}
	c := newTestClient(t, srv, tokens, nil)
	if err := c.UploadKfAvatar(context.Background(), "test1@test", `C:\photos\agent.jpg`, bytes.NewReader(jpeg)); err != nil {
		t.Fatalf("UploadKfAvatar: %v", err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d, want 2 (token refresh)", len(reqs))
	}
	for i, req := range reqs {
		if req.Method != http.MethodPost || req.Path != "/customservice/kfaccount/uploadheadimg" {
			t.Fatalf("request %d = %s %s", i, req.Method, req.Path)
		}
		if got := req.Query.Get("kf_account"); got != "test1@test" {
			t.Fatalf("kf_account = %q", got)
		}
		mediaType, params, err := mime.ParseMediaType(req.ContentType)
		if err != nil || mediaType != "multipart/form-data" {
			t.Fatalf("Content-Type = %q", req.ContentType)
		}
		mr := multipart.NewReader(bytes.NewReader(req.Body), params["boundary"])
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("request %d: no part: %v", i, err)
		}
		if part.FormName() != "media" || part.FileName() != "agent.jpg" {
			t.Fatalf("part name=%q filename=%q, want media/agent.jpg", part.FormName(), part.FileName())
		}
		if ct := part.Header.Get("Content-Type"); ct != "image/jpeg" {
			t.Errorf("part Content-Type = %q, want image/jpeg", ct)
		}
		got, _ := io.ReadAll(part)
		if !bytes.Equal(got, jpeg) {
			t.Fatalf("request %d: uploaded %d bytes, want the %d of the image", i, len(got), len(jpeg))
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Fatalf("want a single part, got err %v", err)
		}
	}
}

func TestInvalidArgumentsAreRefusedWithoutARequest(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		call func(c *wechat.Client) error
	}{
		{"kf account needs an @", func(c *wechat.Client) error {
			return c.AddKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1", Nickname: "n"})
		}},
		{"kf account needs a nickname", func(c *wechat.Client) error {
			return c.UpdateKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1@test"})
		}},
		{"delete needs an account", func(c *wechat.Client) error { return c.DeleteKfAccount(ctx, "") }},
		{"avatar must not be empty", func(c *wechat.Client) error {
			return c.UploadKfAvatar(ctx, "a@b", "x.jpg", strings.NewReader(""))
		}},
		{"avatar must not exceed 5 MiB", func(c *wechat.Client) error {
			return c.UploadKfAvatar(ctx, "a@b", "x.jpg", bytes.NewReader(make([]byte, 5<<20+1)))
		}},
		{"create session needs an openid", func(c *wechat.Client) error { return c.CreateSession(ctx, "a@b", "", "") }},
		{"close session needs an account", func(c *wechat.Client) error { return c.CloseSession(ctx, "", "o", "") }},
		{"getsession needs an openid", func(c *wechat.Client) error { _, err := c.GetSession(ctx, " "); return err }},
		{"getsessionlist needs an account", func(c *wechat.Client) error { _, err := c.GetSessionList(ctx, ""); return err }},
		{"send needs an openid", func(c *wechat.Client) error { return c.SendText(ctx, "", "hi", "") }},
		{"send needs content", func(c *wechat.Client) error { return c.SendText(ctx, "o", "", "") }},
		{"send as a malformed agent account", func(c *wechat.Client) error { return c.SendText(ctx, "o", "hi", "nobody") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(t, inSequence(replyOK))
			c := newTestClient(t, srv, staticToken("t"), nil)
			err := tc.call(c)
			if !errors.Is(err, wechat.ErrInvalidRequest) || !wechat.IsPermanent(err) {
				t.Fatalf("err = %v, want permanent ErrInvalidRequest", err)
			}
			if n := len(srv.requests()); n != 0 {
				t.Fatalf("%d requests sent for invalid input", n)
			}
		})
	}
}
