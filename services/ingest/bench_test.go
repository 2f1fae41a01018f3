package ingest_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// BenchmarkIngestHandler measures the whole callback path the load benchmark
// (bench/ingest) exercises, without the network: ServeHTTP of a signed text
// message, through the signature check (and AES in safe mode), parsing,
// mapping, encoding and a JetStream publish to a real embedded server that
// is waited for. 32 requests are in flight, as on kefu's HTTP server under
// load; every request carries a unique MsgId so none is a duplicate. CPU
// and allocations of the in-process NATS server are part of the figures,
// as they are in the load benchmark.
func BenchmarkIngestHandler(b *testing.B) {
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeSafe} {
		b.Run(mode.String(), func(b *testing.B) { benchmarkHandler(b, mode) })
	}
}

type signedCallback struct {
	rawQuery string
	body     []byte
}

func benchmarkHandler(b *testing.B, mode wechat.Mode) {
	bs, _ := bustest.Open(b, duplicateWindow(dupWindow), bustest.Streams(events.StreamWeChat))
	// Plain mode is an account without the key (and with the replay
	// guard); safe mode one with it.
	key := aesKey
	if mode == wechat.ModePlain {
		key = ""
	}
	svc, err := ingest.New(ingest.Config{AppID: appID, Token: token, AESKey: key}, ingest.Deps{Publisher: bs})
	if err != nil {
		b.Fatal(err)
	}
	codec, err := wechat.NewCodec(token, appID, aesKey)
	if err != nil {
		b.Fatal(err)
	}

	// Signing is the sender's work: done before the clock starts.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	reqs := make([]signedCallback, b.N)
	for i := range reqs {
		plain := fmt.Sprintf("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"+
			"<FromUserName><![CDATA[o-customer-%04d]]></FromUserName><CreateTime>1795600800</CreateTime>"+
			"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好，我想问一下订单 %d 的物流]]></Content>"+
			"<MsgId>%d</MsgId></xml>", i%1000, i, 6054768590064713728+int64(i))
		q, body, err := codec.SignCallback(mode, []byte(plain), "o-customer", ts, fmt.Sprintf("n%d", i))
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
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "success") {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	// Wall time per op depends on whatever else the machine runs; the
	// process's CPU time per op (handler and NATS server) much less so.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d callbacks were not answered success", n, b.N)
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
