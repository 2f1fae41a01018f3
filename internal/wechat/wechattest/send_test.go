package wechattest

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func textMessage(openid, content, kf string) map[string]any {
	m := map[string]any{"touser": openid, "msgtype": "text", "text": map[string]string{"content": content}}
	if kf != "" {
		m["customservice"] = map[string]string{"kf_account": kf}
	}
	return m
}

func TestCustomSend(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fake)
		msg   map[string]any
		want  int
	}{
		{
			name: "a customer who wrote within 48 hours gets the message",
			msg:  textMessage("o1", "您好，客服 alice 为您服务", "alice@shop"),
			want: 0,
		},
		{
			name:  "exactly 48 hours after the last message is still inside the window",
			setup: func(f *fake) { f.clock.Advance(48 * time.Hour) },
			msg:   textMessage("o1", "hi", ""),
			want:  0,
		},
		{
			name:  "more than 48 hours after the last message is 45015",
			setup: func(f *fake) { f.clock.Advance(48*time.Hour + time.Second) },
			msg:   textMessage("o1", "hi", ""),
			want:  CodeReplyTimeLimit,
		},
		{
			name: "a new message from the customer reopens the window",
			setup: func(f *fake) {
				f.clock.Advance(72 * time.Hour)
				if _, err := f.srv.CustomerMessage(f.t.Context(), "o1", "还在吗"); err != nil {
					f.t.Fatal(err)
				}
			},
			msg:  textMessage("o1", "hi", ""),
			want: 0,
		},
		{
			name: "a menu click reopens the window",
			setup: func(f *fake) {
				f.clock.Advance(72 * time.Hour)
				if _, err := f.srv.SendEvent(f.t.Context(), "o1", "CLICK", map[string]string{"EventKey": "HUMAN"}); err != nil {
					f.t.Fatal(err)
				}
			},
			msg:  textMessage("o1", "hi", ""),
			want: 0,
		},
		{
			name: "opening a menu link (VIEW) does not reopen the window",
			setup: func(f *fake) {
				f.clock.Advance(72 * time.Hour)
				if _, err := f.srv.SendEvent(f.t.Context(), "o1", "VIEW", map[string]string{"EventKey": "https://example.com"}); err != nil {
					f.t.Fatal(err)
				}
			},
			msg:  textMessage("o1", "hi", ""),
			want: CodeReplyTimeLimit,
		},
		{
			name: "a customer who unsubscribed is 45015",
			setup: func(f *fake) {
				if _, err := f.srv.SendEvent(f.t.Context(), "o1", "unsubscribe", nil); err != nil {
					f.t.Fatal(err)
				}
			},
			msg:  textMessage("o1", "hi", ""),
			want: CodeReplyTimeLimit,
		},
		{name: "an unknown openid is 40003", msg: textMessage("nobody", "hi", ""), want: CodeInvalidOpenID},
		{name: "an unknown msgtype is 40008", msg: map[string]any{"touser": "o1", "msgtype": "fax"}, want: CodeInvalidMessageType},
		{name: "an empty text is 44004", msg: textMessage("o1", "", ""), want: CodeEmptyContent},
		{name: "an unknown customservice account is 65401", msg: textMessage("o1", "hi", "zed@shop"), want: CodeInvalidKFAccount},
		{
			name: "another msgtype is recorded too",
			msg:  map[string]any{"touser": "o1", "msgtype": "image", "image": map[string]string{"media_id": "M1"}},
			want: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, nil)
			f.agent("alice@shop", 1)
			if _, err := f.srv.CustomerMessage(t.Context(), "o1", "你好"); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(f)
				f.token = f.fetchToken() // the clock may have outrun the token
			}
			if got := errcode(f.post(MethodCustomSend, nil, tt.msg)); got != tt.want {
				t.Fatalf("errcode = %d, want %d", got, tt.want)
			}
			sent := f.srv.Sent()
			if tt.want != 0 {
				if len(sent) != 0 {
					t.Fatalf("refused message recorded: %+v", sent)
				}
				return
			}
			if len(sent) != 1 {
				t.Fatalf("%d messages recorded, want 1", len(sent))
			}
			m := sent[0]
			if m.OpenID != tt.msg["touser"] || m.MsgType != tt.msg["msgtype"] || !m.Time.Equal(f.clock.Now()) {
				t.Fatalf("recorded %+v", m)
			}
			if text, ok := tt.msg["text"].(map[string]string); ok && m.Content != text["content"] {
				t.Fatalf("content = %q", m.Content)
			}
			if cs, ok := tt.msg["customservice"].(map[string]string); ok && m.KfAccount != cs["kf_account"] {
				t.Fatalf("kf_account = %q", m.KfAccount)
			}
		})
	}
}

func TestCustomSendCountLimit(t *testing.T) {
	f := newFake(t, func(c *Config) { c.MaxMessagesPerInteraction = 3 })
	if _, err := f.srv.CustomerMessage(t.Context(), "o1", "hi"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if c := errcode(f.post(MethodCustomSend, nil, textMessage("o1", "update", ""))); c != 0 {
			t.Fatalf("message %d: errcode %d", i+1, c)
		}
	}
	if c := errcode(f.post(MethodCustomSend, nil, textMessage("o1", "update", ""))); c != CodeResponseCountLimit {
		t.Fatalf("message 4: errcode %d, want 45047", c)
	}
	if _, err := f.srv.CustomerMessage(t.Context(), "o1", "ok"); err != nil {
		t.Fatal(err)
	}
	if c := errcode(f.post(MethodCustomSend, nil, textMessage("o1", "update", ""))); c != 0 {
		t.Fatalf("after the customer wrote again: errcode %d", c)
	}
}

func TestInjectedErrors(t *testing.T) {
	f := newFake(t, nil)
	if _, err := f.srv.CustomerMessage(t.Context(), "o1", "hi"); err != nil {
		t.Fatal(err)
	}
	f.srv.InjectErrors("/"+MethodCustomSend, CodeSystemBusy, 2)
	var got []int
	for range 3 {
		got = append(got, errcode(f.post(MethodCustomSend, nil, textMessage("o1", "hi", ""))))
	}
	if got[0] != -1 || got[1] != -1 || got[2] != 0 {
		t.Fatalf("errcodes = %v, want [-1 -1 0]", got)
	}
	if n := f.srv.CallCount(MethodCustomSend); n != 3 {
		t.Fatalf("CallCount = %d, want 3", n)
	}
	if n := len(f.srv.Sent()); n != 1 {
		t.Fatalf("%d messages recorded, want only the successful one", n)
	}
	t.Run("injected errors come before the token check", func(t *testing.T) {
		f.srv.InjectErrors(MethodKFList, 45009, 1)
		if c := errcode(f.get(MethodKFList, nil, false)); c != 45009 {
			t.Fatalf("errcode = %d, want the injected 45009", c)
		}
		if c := errcode(f.get(MethodKFList, nil, false)); c != CodeMissingAccessToken {
			t.Fatalf("errcode = %d, want 41001 once the injection is used up", c)
		}
	})
}

func TestLatencyMakesImpatientClientsTimeOut(t *testing.T) {
	f := newFake(t, nil)
	f.srv.SetLatency(MethodKFList, time.Minute)
	client := &http.Client{Timeout: 20 * time.Millisecond}
	u := f.http.URL + "/" + MethodKFList + "?" + url.Values{"access_token": {f.token}}.Encode()
	resp, err := client.Get(u)
	if err == nil {
		resp.Body.Close()
		t.Fatal("call with a minute of latency answered within the client timeout")
	}
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("error = %v, want a timeout", err)
	}
	f.srv.SetLatency(MethodKFList, 0)
	f.mustOK(f.get(MethodKFList, nil, true))
}
