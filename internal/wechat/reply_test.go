package wechat

import (
	"strings"
	"testing"
)

func TestTextReply(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string // Content as a parser reads it back
	}{
		{"plain text survives", "您好，客服 test1@test 为您服务", "您好，客服 test1@test 为您服务"},
		{"markup characters survive inside CDATA", `<a href="x">&amp;</a>`, `<a href="x">&amp;</a>`},
		{"a CDATA terminator in the content cannot end the section early", "a]]>b]]>", "a]]>b]]>"},
		{"newlines are kept", "line 1\nline 2", "line 1\nline 2"},
		{"characters XML cannot carry become U+FFFD", "a\x00b\x1bc", "a\uFFFDb\uFFFDc"},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb", "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := TextReply("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "gh_10f6c3c3ac5a", 1700000000, tt.content)
			cb, err := ParseCallback(reply)
			if err != nil {
				t.Fatalf("reply %s does not parse: %v", reply, err)
			}
			if cb.ToUserName != "oyORnuP8q7ou2gfYjqLzSIWZf0rs" || cb.FromUserName != "gh_10f6c3c3ac5a" ||
				cb.CreateTime != 1700000000 || cb.MsgType != "text" || cb.Content != tt.want {
				t.Errorf("reply parses to %+v, want Content %q", cb, tt.want)
			}
		})
	}
}

func TestTextReplyMatchesWeChatLayout(t *testing.T) {
	got := string(TextReply("toUser", "fromUser", 12345678, "你好"))
	want := "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>" +
		"<CreateTime>12345678</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content></xml>"
	if got != want {
		t.Errorf("TextReply =\n%s\nwant\n%s", got, want)
	}
}

func TestTransferCustomerServiceReply(t *testing.T) {
	tests := []struct {
		name      string
		kfAccount string
		wantTrans map[string]any // nil: no TransInfo element
	}{
		{"without an agent the customer joins the shared queue", "", nil},
		{"with an agent TransInfo names it", "test1@test", map[string]any{"KfAccount": "test1@test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := TransferCustomerServiceReply("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "gh_10f6c3c3ac5a", 1399197672, tt.kfAccount)
			cb, err := ParseCallback(reply)
			if err != nil {
				t.Fatalf("reply %s does not parse: %v", reply, err)
			}
			if cb.MsgType != "transfer_customer_service" || cb.ToUserName != "oyORnuP8q7ou2gfYjqLzSIWZf0rs" ||
				cb.FromUserName != "gh_10f6c3c3ac5a" || cb.CreateTime != 1399197672 {
				t.Errorf("reply parses to %+v", cb)
			}
			trans, present := cb.Fields["TransInfo"]
			if (tt.wantTrans == nil) == present {
				t.Fatalf("TransInfo present = %v in %s", present, reply)
			}
			if present && trans.(map[string]any)["KfAccount"] != tt.wantTrans["KfAccount"] {
				t.Errorf("TransInfo = %v, want %v", trans, tt.wantTrans)
			}
			if strings.Count(string(reply), "<xml>") != 1 {
				t.Errorf("reply %s has more than one root", reply)
			}
		})
	}
}

func TestSuccessReply(t *testing.T) {
	if SuccessReply != "success" {
		t.Errorf("SuccessReply = %q; WeChat only accepts the literal \"success\"", SuccessReply)
	}
}
