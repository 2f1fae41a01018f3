package wechat_test

import (
	"context"
	"testing"
)

// BenchmarkSendText measures the client's own cost per call (JSON encoding,
// token lookup, request, errcode decoding) against a trivial local server.
func BenchmarkSendText(b *testing.B) {
	srv := newAPIServer(b, inSequence(replyOK))
	c := newTestClient(b, srv, staticToken("tok-1"), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.SendText(ctx, "OPENID", "您好，客服 test1@test 正在为您服务。", "test1@test"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkSendTextParallel is the same with concurrent callers sharing one client.
func BenchmarkSendTextParallel(b *testing.B) {
	srv := newAPIServer(b, inSequence(replyOK))
	c := newTestClient(b, srv, staticToken("tok-1"), nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.SendText(ctx, "OPENID", "您好", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
