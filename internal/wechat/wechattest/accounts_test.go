package wechattest

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestKFAccountAdd(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		before  []string // accounts added first
		account string
		nick    string
		want    int
	}{
		{name: "a well-formed account is added", account: "alice@shop", nick: "Alice", want: 0},
		{name: "an account without @ is illegal", account: "alice", nick: "Alice", want: CodeIllegalKFAccount},
		{name: "a prefix over 10 characters is illegal", account: "abcdefghijk@shop", nick: "A", want: CodeIllegalKFAccount},
		{name: "a prefix with a dot is illegal", account: "a.b@shop", nick: "A", want: CodeIllegalKFAccount},
		{name: "a suffix other than the configured WeChat id is illegal", edit: func(c *Config) { c.WeChatID = "shop" }, account: "alice@other", nick: "A", want: CodeIllegalKFAccount},
		{name: "the configured WeChat id as suffix is accepted", edit: func(c *Config) { c.WeChatID = "shop" }, account: "alice@shop", nick: "A", want: 0},
		{name: "an empty nickname is invalid", account: "alice@shop", nick: "", want: CodeInvalidNickname},
		{name: "a nickname of 17 characters is invalid", account: "alice@shop", nick: strings.Repeat("客", 17), want: CodeInvalidNickname},
		{name: "a nickname of 16 characters is valid", account: "alice@shop", nick: strings.Repeat("客", 16), want: 0},
		{name: "an existing account cannot be added again", before: []string{"alice@shop"}, account: "alice@shop", nick: "A", want: CodeKFAccountExists},
		{name: "the account limit is enforced", edit: func(c *Config) { c.MaxAccounts = 2 }, before: []string{"a@shop", "b@shop"}, account: "c@shop", nick: "C", want: CodeKFAccountLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.edit)
			for _, acc := range tt.before {
				f.mustOK(f.post(MethodKFAdd, nil, map[string]string{"kf_account": acc, "nickname": "x"}))
			}
			got := errcode(f.post(MethodKFAdd, nil, map[string]string{"kf_account": tt.account, "nickname": tt.nick, "password": "96e79218965eb72c92a549dd5a330112"}))
			if got != tt.want {
				t.Fatalf("errcode = %d, want %d", got, tt.want)
			}
			listed := strings.Contains(fmt.Sprint(f.get(MethodKFList, nil, true)), tt.account)
			if (tt.want == 0 || tt.want == CodeKFAccountExists) != listed {
				t.Fatalf("account listed = %v after errcode %d", listed, got)
			}
		})
	}
}

func TestKFAccountUpdateAndDelete(t *testing.T) {
	f := newFake(t, nil)
	f.mustOK(f.post(MethodKFAdd, nil, map[string]string{"kf_account": "alice@shop", "nickname": "Alice"}))

	if got := errcode(f.post(MethodKFUpdate, nil, map[string]string{"kf_account": "bob@shop", "nickname": "Bob"})); got != CodeInvalidKFAccount {
		t.Fatalf("update of a missing account: errcode %d, want 65401", got)
	}
	if got := errcode(f.post(MethodKFUpdate, nil, map[string]string{"kf_account": "alice@shop", "nickname": ""})); got != CodeInvalidNickname {
		t.Fatalf("update with an empty nickname: errcode %d, want 65403", got)
	}
	f.mustOK(f.post(MethodKFUpdate, nil, map[string]string{"kf_account": "alice@shop", "nickname": "Alice2"}))
	list := f.get(MethodKFList, nil, true)["kf_list"].([]any)
	entry := list[0].(map[string]any)
	if entry["kf_nick"] != "Alice2" || entry["kf_id"] != "1001" || entry["kf_headimgurl"] != "" {
		t.Fatalf("kf_list entry = %v", entry)
	}

	if got := errcode(f.get(MethodKFDel, url.Values{"kf_account": {"bob@shop"}}, true)); got != CodeInvalidKFAccount {
		t.Fatalf("delete of a missing account: errcode %d, want 65401", got)
	}
	f.mustOK(f.get(MethodKFDel, url.Values{"kf_account": {"alice@shop"}}, true))
	if n := len(f.get(MethodKFList, nil, true)["kf_list"].([]any)); n != 0 {
		t.Fatalf("%d accounts left after delete", n)
	}
}

func TestKFAccountDeleteClosesSessionsAndUnpinsCustomers(t *testing.T) {
	f := newFake(t, nil)
	f.agent("alice@shop", 1)
	f.transfer("o1", "alice@shop") // served
	f.transfer("o2", "alice@shop") // waits for alice
	f.mustOK(f.post(MethodKFDel, url.Values{"kf_account": {"alice@shop"}}, nil))
	st := f.srv.Snapshot()
	if len(st.Sessions) != 0 {
		t.Fatalf("sessions after delete: %v", st.Sessions)
	}
	if len(st.Waiting) != 1 || st.Waiting[0].KfAccount != "" {
		t.Fatalf("waiting after delete: %+v, want o2 waiting for anyone", st.Waiting)
	}
	f.agent("bob@shop", 1)
	if servedBy(f.srv.Snapshot())["o2"] != "bob@shop" {
		t.Fatal("un-pinned customer was not assigned to another agent")
	}
}

// jpeg is the start of a JPEG file: enough for content sniffing.
var jpeg = append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F', 0}, bytes.Repeat([]byte{1}, 64)...)

func (f *fake) uploadHeadImg(account, field string, img []byte) map[string]any {
	f.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, err := mw.CreateFormFile(field, "head.jpg")
	if err != nil {
		f.t.Fatal(err)
	}
	_, _ = w.Write(img)
	_ = mw.Close()
	q := url.Values{"access_token": {f.token}, "kf_account": {account}}
	resp, err := http.Post(f.http.URL+"/"+MethodKFUploadHeadImg+"?"+q.Encode(), mw.FormDataContentType(), &body)
	if err != nil {
		f.t.Fatal(err)
	}
	return decodeResponse(f.t, resp)
}

func TestKFAccountUploadHeadImg(t *testing.T) {
	tests := []struct {
		name    string
		account string
		field   string
		img     []byte
		want    int
	}{
		{"a JPEG in the media field is stored", "alice@shop", "media", jpeg, 0},
		{"an unknown account is 65401", "bob@shop", "media", jpeg, CodeInvalidKFAccount},
		{"a file in another field is missing media", "alice@shop", "file", jpeg, CodeMissingMedia},
		{"text is not an image", "alice@shop", "media", []byte("hello, not an image at all"), CodeInvalidFileType},
		{"an image over the size limit is 40009", "alice@shop", "media", append(append([]byte{}, jpeg...), make([]byte, 2048)...), CodeInvalidMediaSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, func(c *Config) { c.MaxHeadImgBytes = 1024 })
			f.mustOK(f.post(MethodKFAdd, nil, map[string]string{"kf_account": "alice@shop", "nickname": "Alice"}))
			if got := errcode(f.uploadHeadImg(tt.account, tt.field, tt.img)); got != tt.want {
				t.Fatalf("errcode = %d, want %d", got, tt.want)
			}
			headURL := f.get(MethodKFList, nil, true)["kf_list"].([]any)[0].(map[string]any)["kf_headimgurl"].(string)
			if tt.want != 0 {
				if headURL != "" {
					t.Fatalf("kf_headimgurl = %q after a failed upload", headURL)
				}
				return
			}
			resp, err := http.Get(headURL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if !bytes.Equal(got, tt.img) || resp.Header.Get("Content-Type") != "image/jpeg" {
				t.Fatalf("avatar served as %q, %d bytes", resp.Header.Get("Content-Type"), len(got))
			}
		})
	}
}

func TestKFMethodsNeedUpgradeAndPOST(t *testing.T) {
	f := newFake(t, nil)
	if got := errcode(f.get(MethodKFAdd, nil, true)); got != CodeRequirePOST {
		t.Fatalf("GET kfaccount/add: errcode %d, want 43002", got)
	}
	if got := errcode(f.postRaw(MethodKFAdd, "")); got != CodeEmptyPostData {
		t.Fatalf("kfaccount/add with an empty body: errcode %d, want 44002", got)
	}
	if got := errcode(f.postRaw(MethodKFAdd, `{"kf_account":`)); got != CodeDataFormatError {
		t.Fatalf("kfaccount/add with broken JSON: errcode %d, want 47001", got)
	}
	f.srv.SetUpgraded(false)
	for _, m := range []string{MethodKFList, MethodKFOnlineList, MethodWaitCase} {
		if got := errcode(f.get(m, nil, true)); got != CodeKFUnavailable {
			t.Fatalf("%s before the upgrade: errcode %d, want 65400", m, got)
		}
	}
	f.srv.SetUpgraded(true)
	f.mustOK(f.get(MethodKFList, nil, true))
}

func TestOnlineListShowsOnlineAgentsWithLoad(t *testing.T) {
	f := newFake(t, nil)
	f.agent("alice@shop", 2)
	f.agent("bob@shop", 0)
	if err := f.srv.AddAgent("carol@shop", "Carol"); err != nil { // offline
		t.Fatal(err)
	}
	if err := f.srv.SetAgentStatus("bob@shop", StatusBoth); err != nil {
		t.Fatal(err)
	}
	f.transfer("o1", "")
	list := f.get(MethodKFOnlineList, nil, true)["kf_online_list"].([]any)
	got := jsonString(t, list)
	want := `[{"accepted_case":1,"auto_accept":2,"kf_account":"alice@shop","kf_id":"1001","status":1},{"accepted_case":0,"auto_accept":0,"kf_account":"bob@shop","kf_id":"1002","status":3}]`
	if got != want {
		t.Fatalf("kf_online_list = %s\nwant %s", got, want)
	}
}
