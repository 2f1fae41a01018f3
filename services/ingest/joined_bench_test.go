package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// BenchmarkTransferJoin measures what publishing the join costs a
// transferred customer message (safe mode, 16 in flight, as
// BenchmarkIngestHandler): "success" is the message alone, as with
// transfer off; "transfer" answers transfer_customer_service and also
// publishes kefu.wechat.kf.queue.joined. No WeChat API is called either
// way.
//
//	go test -run '^$' -bench BenchmarkTransferJoin ./services/ingest/
func BenchmarkTransferJoin(b *testing.B) {
	for _, transfer := range []bool{false, true} {
		name := "success"
		if transfer {
			name = "transfer"
		}
		b.Run(name, func(b *testing.B) { benchmarkTransfer(b, transfer) })
	}
}

func benchmarkTransfer(b *testing.B, transfer bool) {
	bs, _ := bustest.Open(b, duplicateWindow(dupWindow), bustest.Streams(events.StreamWeChat))
	svc, err := ingest.New(ingest.Config{AppID: appID, Token: token, AESKey: aesKey, Transfer: transfer}, ingest.Deps{Publisher: bs})
	if err != nil {
		b.Fatal(err)
	}
	codec, err := wechat.NewCodec(token, appID, aesKey)
	if err != nil {
		b.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	reqs := make([]signedCallback, b.N)
	for i := range reqs {
		plain := fmt.Sprintf("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"+
			"<FromUserName><![CDATA[o-customer-%04d]]></FromUserName><CreateTime>1795600800</CreateTime>"+
			"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content>"+
			"<MsgId>%d</MsgId></xml>", i%1000, 7054768590064713728+int64(i))
		q, body, err := codec.SignCallback(wechat.ModeSafe, []byte(plain), "o-customer", ts, fmt.Sprintf("n%d", i))
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = signedCallback{rawQuery: q.Encode(), body: body}
	}
	var next, failed atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := reqs[next.Add(1)-1]
			r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/wechat/callback", RawQuery: c.rawQuery},
				Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(c.body))}
			w := httptest.NewRecorder()
			svc.ServeHTTP(w, r)
			if w.Code != http.StatusOK || (!transfer && !strings.Contains(w.Body.String(), "success")) {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d callbacks failed", n, b.N)
	}
	want := uint64(b.N)
	if transfer {
		want *= 2
	}
	info, err := bs.Stream(context.Background(), events.StreamWeChat)
	if err != nil {
		b.Fatal(err)
	}
	st, err := info.Info(context.Background())
	if err != nil || st.State.Msgs != want {
		b.Fatalf("%d events stored, want %d (%v)", st.State.Msgs, want, err)
	}
}
