package wechattest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/wechat"
)

// control calls the control API and returns the status and decoded body.
func (f *fake) control(method, path, body string) (int, map[string]any) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &m); err != nil {
			f.t.Fatalf("decode %s: %v", b, err)
		}
	}
	return resp.StatusCode, m
}

func TestControlAPI(t *testing.T) {
	f := newFake(t, nil)
	steps := []struct {
		name, method, path, body string
		wantStatus               int
		wantErrcode              int
	}{
		{"an agent is added online", "POST", "/_control/agents", `{"kf_account":"alice@shop","nickname":"Alice","status":1,"auto_accept":1}`, 200, 0},
		{"a second agent is added offline", "POST", "/_control/agents", `{"kf_account":"bob@shop","nickname":"Bob"}`, 200, 0},
		{"a customer writes and is queued", "POST", "/_control/customers", `{"openid":"o1","text":"人工","transfer":true}`, 200, 0},
		{"another customer waits for bob", "POST", "/_control/customers/o2/transfer", `{"kf_account":"bob@shop"}`, 200, 0},
		{"an unknown agent cannot come online", "POST", "/_control/agents/zed@shop/online", `{}`, 409, CodeInvalidKFAccount},
		{"a served customer cannot abandon the queue", "POST", "/_control/customers/o1/abandon", ``, 409, CodeNoSession},
		{"a session moves to an offline agent only after it comes online", "POST", "/_control/sessions/o1/switch", `{"to_kf_account":"bob@shop"}`, 409, CodeKFOffline},
		{"bob comes online with room for two", "POST", "/_control/agents/bob@shop/online", `{"status":2,"auto_accept":2}`, 200, 0},
		{"the session moves to bob", "POST", "/_control/sessions/o1/switch", `{"to_kf_account":"bob@shop"}`, 200, 0},
		{"an event is sent", "POST", "/_control/customers/o3/events", `{"event":"subscribe"}`, 200, 0},
		{"a bad fault request is refused", "POST", "/_control/faults", `{"method":""}`, 400, 0},
		{"a bad latency is refused", "POST", "/_control/latency", `{"method":"x","latency":"soon"}`, 400, 0},
		{"malformed JSON is refused", "POST", "/_control/agents", `{`, 400, 0},
		{"a fault is injected", "POST", "/_control/faults", `{"method":"cgi-bin/customservice/getkflist","errcode":-1,"n":1}`, 200, 0},
	}
	for _, s := range steps {
		status, body := f.control(s.method, s.path, s.body)
		if status != s.wantStatus {
			t.Fatalf("%s: HTTP %d %v, want %d", s.name, status, body, s.wantStatus)
		}
		if s.wantErrcode != 0 && errcode(body) != s.wantErrcode {
			t.Fatalf("%s: errcode %d, want %d", s.name, errcode(body), s.wantErrcode)
		}
	}

	var st State
	resp, err := http.Get(f.http.URL + "/_control/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if got := servedBy(st); got["o1"] != "bob@shop" || got["o2"] != "bob@shop" {
		t.Fatalf("served = %v, want o1 and o2 by bob", got)
	}
	if st.Customers != 3 {
		t.Fatalf("customers = %d, want 3", st.Customers)
	}
	if c := errcode(f.get(MethodKFList, nil, true)); c != CodeSystemBusy {
		t.Fatalf("after the injected fault: errcode %d, want -1", c)
	}
	if status, _ := f.control("POST", "/_control/tokens/expire", ""); status != 200 {
		t.Fatalf("expire tokens: HTTP %d", status)
	}
	if c := f.probe(f.token); c != CodeAccessTokenExpired {
		t.Fatalf("after expire: errcode %d, want 42001", c)
	}
	f.token = f.fetchToken()
	f.mustOK(f.post(MethodCustomSend, nil, textMessage("o1", "您好", "bob@shop")))
	resp, err = http.Get(f.http.URL + "/_control/sent")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sent []SentMessage
	if err := json.NewDecoder(resp.Body).Decode(&sent); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 || sent[0].Content != "您好" || sent[0].KfAccount != "bob@shop" {
		t.Fatalf("sent = %+v", sent)
	}
}

func TestReplyEnvelopeOpener(t *testing.T) {
	f := newFake(t, func(c *Config) { c.Mode = wechat.ModeSafe })
	t.Run("the official sample opens", func(t *testing.T) {
		plain, err := f.srv.openReplyEnvelope(replyDoc{
			Encrypt:      "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=",
			MsgSignature: "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
			TimeStamp:    "1409735669",
			Nonce:        "1320562132",
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) != 280 || !strings.HasPrefix(string(plain), "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>") {
			t.Fatalf("decrypted %d bytes: %q", len(plain), plain)
		}
	})
	t.Run("a message padded with a whole 32-byte block opens", func(t *testing.T) {
		msg := []byte(strings.Repeat("x", 26)) // 20 + 26 + len(appid)=18 = 64: pad 32
		env, _, err := testCodec(t).Seal(msg, "1", "2")
		if err != nil {
			t.Fatal(err)
		}
		doc, err := parseReply(env)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.srv.openReplyEnvelope(doc)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("opened %q, %v", got, err)
		}
	})
	t.Run("a payload sealed for another appid is refused", func(t *testing.T) {
		other, err := wechat.NewCodec(testToken, "wxother", testAESKey)
		if err != nil {
			t.Fatal(err)
		}
		env, _, err := other.Seal([]byte("<xml/>"), "1", "2")
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := parseReply(env)
		if _, err := f.srv.openReplyEnvelope(doc); err == nil {
			t.Fatal("opened a reply sealed for another appid")
		}
	})
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"AppID is required", Config{AppSecret: "s", Token: "t"}},
		{"AppSecret is required", Config{AppID: "wx", Token: "t"}},
		{"Token is required", Config{AppID: "wx", AppSecret: "s"}},
		{"safe mode needs a key", Config{AppID: "wx", AppSecret: "s", Token: "t", Mode: wechat.ModeSafe}},
		{"a bad key is refused", Config{AppID: "wx", AppSecret: "s", Token: "t", EncodingAESKey: "short"}},
		{"an unknown wait-case field is refused", Config{AppID: "wx", AppSecret: "s", Token: "t", WaitCaseTimeField: "time"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(tt.cfg); err == nil {
				s.Close()
				t.Fatal("New accepted the config")
			}
		})
	}
}
