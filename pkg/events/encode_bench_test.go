package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// BenchmarkEncode compares events.Encode with encoding/json (what Encode
// used to call) on the event of a typical text message callback.
func BenchmarkEncode(b *testing.B) {
	at := time.Date(2026, 11, 25, 10, 0, 1, 500_000_000, time.UTC)
	e := events.MessageReceived{Meta: events.Meta{AppID: "wx2c2769f8efd9abc2", OccurredAt: at.Truncate(time.Second), ReceivedAt: at},
		WeChatSource: events.WeChatSource{OpenID: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", ToUserName: "gh_10f6c3c3ac5a", CreateTime: 1795600800,
			Raw: map[string]any{"ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "CreateTime": "1795600800",
				"MsgType": "text", "Content": "你好，我想问一下订单 42 的物流", "MsgId": "6054768590064713728"}},
		MsgType: "text", MsgID: "6054768590064713728", Content: "你好，我想问一下订单 42 的物流"}
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := events.Encode(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendEncode_reused_buffer", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; i < b.N; i++ {
			var err error
			if buf, err = events.AppendEncode(buf[:0], e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHeaders compares SetHeaders with what bus.PublishRaw used to do:
// build the Headers map and copy it into a nats.Header.
func BenchmarkHeaders(b *testing.B) {
	at := time.Date(2026, 11, 25, 10, 0, 1, 500_000_000, time.UTC)
	const subject, id, source = "kefu.wechat.message.text", "wx-msg-6054768590064713728", "kefu/ingest/wx2c2769f8efd9abc2"
	b.Run("Headers_copied", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			h := make(map[string][]string, 8)
			for k, v := range events.Headers(subject, id, source, at) {
				h[k] = []string{v}
			}
		}
	})
	b.Run("SetHeaders", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			events.SetHeaders(make(map[string][]string, 8), subject, id, source, at)
		}
	})
}
