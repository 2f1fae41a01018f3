package replay

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestAppendJSONStringDecodesBackToTheString(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain ASCII is kept", "kefu.wechat.kf.session.created", "kefu.wechat.kf.session.created"},
		{"quotes and backslashes are escaped", `say "hi" \ bye`, `say "hi" \ bye`},
		{"line breaks and tabs are escaped", "a\nb\r\tc", "a\nb\r\tc"},
		{"other control characters use \\u escapes", "\x00\x01\x1f\x7f", "\x00\x01\x1f\x7f"},
		{"UTF-8 is kept", "你好 — ☕ \u2028", "你好 — ☕ \u2028"},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb\xc3", "a\ufffdb\ufffd"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := appendJSONString(nil, tt.in)
			var got string
			if err := json.Unmarshal(enc, &got); err != nil {
				t.Fatalf("%s is not a JSON string: %v", enc, err)
			}
			if got != tt.want {
				t.Fatalf("decodes to %q; want %q", got, tt.want)
			}
			if strings.ContainsAny(string(enc), "\n\r") {
				t.Fatalf("%q holds a raw line break", enc)
			}
		})
	}
}

func TestAppendLineFormat(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	tests := []struct {
		name string
		rec  record
		want string
	}{
		{"a JSON body is embedded as it is, headers sorted",
			record{Stream: "KEFU_WECHAT", Seq: 7, Subject: "kefu.wechat.kf.session.created", Time: at,
				Header: nats.Header{"ce-type": {"t"}, "Nats-Msg-Id": {"id-1"}, "X-Tag": {"a", "b"}}, Data: []byte(`{"openid":"o1"}`)},
			`{"stream":"KEFU_WECHAT","seq":7,"subject":"kefu.wechat.kf.session.created","time":"2026-11-25T02:00:00.123456789Z",` +
				`"headers":{"Nats-Msg-Id":"id-1","X-Tag":["a","b"],"ce-type":"t"},"data":{"openid":"o1"}}` + "\n"},
		{"a multi-line JSON body is compacted onto the line",
			record{Stream: "S", Seq: 1, Subject: "s", Time: at, Data: []byte("{\n \"a\": [1,\r\n 2]\n}\n")},
			`{"stream":"S","seq":1,"subject":"s","time":"2026-11-25T02:00:00.123456789Z","headers":{},"data":{"a":[1,2]}}` + "\n"},
		{"a body that is not JSON is base64",
			record{Stream: "S", Seq: 2, Subject: "s", Time: at, Data: []byte{0xff, 0x00, 'x'}},
			`{"stream":"S","seq":2,"subject":"s","time":"2026-11-25T02:00:00.123456789Z","headers":{},"data_base64":"/wB4"}` + "\n"},
		{"an empty body is an empty data_base64",
			record{Stream: "S", Seq: 3, Subject: "s", Time: at},
			`{"stream":"S","seq":3,"subject":"s","time":"2026-11-25T02:00:00.123456789Z","headers":{},"data_base64":""}` + "\n"},
		{"without a stream, stream and seq are left out",
			record{Subject: "kefu.x", Time: at, Data: []byte(`1`)},
			`{"subject":"kefu.x","time":"2026-11-25T02:00:00.123456789Z","headers":{},"data":1}` + "\n"},
	}
	var enc lineEncoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(enc.appendLine(nil, &tt.rec))
			if got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("not valid JSON: %s", got)
			}
		})
	}
}

func TestSummarySaysWhatTheEventIsAbout(t *testing.T) {
	tests := []struct {
		name, subject, body string
		header              nats.Header
		want                string
	}{
		{"session created", "kefu.wechat.kf.session.created", `{"openid":"o1","kf_account":"a@t"}`, nil, "openid=o1 kf=a@t"},
		{"session switched", "kefu.wechat.kf.session.switched", `{"openid":"o1","from_kf_account":"a@t","to_kf_account":"b@t"}`, nil, "openid=o1 from=a@t to=b@t"},
		{"text message content is quoted and cut",
			"kefu.wechat.message.text", `{"openid":"o1","msg_id":"9","content":"line\n` + strings.Repeat("x", 70) + `"}`, nil,
			`openid=o1 msg_id=9 content="line\n` + strings.Repeat("x", 55) + `…"`},
		{"menu click", "kefu.wechat.event.click", `{"openid":"o1","event":"click","event_key":"K"}`, nil, `openid=o1 event=click key="K"`},
		{"queue snapshot", "kefu.kf.queue.snapshot", `{"waiting_count":120,"waiting":[],"agents":[{"kf_account":"a"}]}`, nil, "waiting=120 agents=1"},
		{"wait estimate", "kefu.kf.wait.estimated", `{"openid":"o1","position":2,"wait_seconds":60,"wait_p90_seconds":180,"model":"m"}`, nil, "openid=o1 position=2 wait=60s p90=180s model=m"},
		{"failed notification shows errcode", "kefu.notify.failed", `{"openid":"o1","kind":"session_created","outcome":"failed","errcode":45015}`, nil, "openid=o1 kind=session_created outcome=failed errcode=45015"},
		{"Tucao post", "kefu.tucao.post.created", `{"id":"42","openid":"o1","content":"slow","reply_count":1}`, nil, `post=42 openid=o1 replies=1 content="slow"`},
		{"unknown subject shows its type and size", "kefu.dlq.notifier", `{}`, nats.Header{"ce-type": {"kefu.wechat.kf.session.created.v1"}}, "type=kefu.wechat.kf.session.created.v1 2 bytes"},
		{"undecodable body says so", "kefu.wechat.kf.session.closed", `not json`, nil, "undecodable body, 8 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summary(&record{Subject: tt.subject, Header: tt.header, Data: []byte(tt.body)})
			if got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Time
		bad      bool
	}{
		{"a duration counts back from now", "2h", now.Add(-2 * time.Hour), false},
		{"a compound duration", "1h30m", now.Add(-90 * time.Minute), false},
		{"an RFC 3339 time", "2026-11-25T10:00:00Z", time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), false},
		{"an RFC 3339 time with a zone and fraction", "2026-11-25T18:00:00.5+08:00", time.Date(2026, 11, 25, 10, 0, 0, 5e8, time.UTC), false},
		{"a day alone is not enough", "2026-11-25", time.Time{}, true},
		{"a negative duration", "-5m", time.Time{}, true},
		{"words", "yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSince(tt.in, now)
			if (err != nil) != tt.bad {
				t.Fatalf("error %v; want error %v", err, tt.bad)
			}
			if !tt.bad && !got.Equal(tt.want) {
				t.Fatalf("got %s; want %s", got, tt.want)
			}
		})
	}
}
