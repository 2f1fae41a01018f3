package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

func storeForwardConfig(t *testing.T) config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KEFU_WECHAT_APPID": "wx1", "KEFU_WECHAT_TOKEN": "tok",
			"KEFU_WECHAT_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "KEFU_INGEST_STORE_FORWARD": "true",
			"KEFU_DATA_DIR": dir, "KEFU_NATS_LISTEN": "127.0.0.1:0"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// With KEFU_INGEST_STORE_FORWARD the ingest role publishes through its
// spool, which the cluster's KEFU_WECHAT sources over the leaf port of the
// KEFU_NATS_URL hosts.
func TestIngestWithStoreForwardReachesTheCluster(t *testing.T) {
	// The role dials the conventional leaf port, 7422.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bus.DefaultLeafPort)))
	if err != nil {
		t.Skipf("leaf port %d busy: %v", bus.DefaultLeafPort, err)
	}
	l.Close()
	opts := natstest.Options(t)
	opts.LeafNode.Host, opts.LeafNode.Port = "127.0.0.1", bus.DefaultLeafPort
	srv := natstest.Run(t, opts)

	cfg := storeForwardConfig(t)
	cfg.NATSURLs = []string{srv.ClientURL()}
	b, _ := bustest.Open(t, bustest.Server(srv),
		bustest.Config(func(c *bus.Config) { *c = busConfig(cfg, "kefu-test", zap.NewNop(), nil) }))
	rt := &runtime{role: role{name: "ingest"}, cfg: cfg, log: zap.NewNop(), bus: b, registry: prometheus.NewRegistry(), mux: http.NewServeMux()}
	m, err := buildIngest(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(rt.mux)
	defer hs.Close()

	codec, err := wechat.NewCodec("tok", "wx1", cfg.WeChatAESKey.Value())
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oSpool]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>42</MsgId></xml>`)
	q, body, err := codec.SignCallback(wechat.ModeSafe, plain, "oyORnuP8q7ou2gfYjqLzSIWZf0rs", strconv.FormatInt(time.Now().Unix(), 10), "77")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(hs.URL+"/wechat/callback?"+q.Encode(), "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// 200 with "success" or the transfer reply: stored either way.
	if resp.StatusCode != 200 {
		t.Fatalf("callback: %d %q", resp.StatusCode, got)
	}
	s, err := b.Stream(context.Background(), events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := s.GetLastMsgForSubject(context.Background(), "kefu.wechat.message.text")
		if err == nil {
			if id := m.Header.Get(events.HeaderMsgID); id != events.WeChatMessageID("42") {
				t.Fatalf("stored %q", id)
			}
			// Sourced from the spool, not published to the cluster directly.
			if !strings.Contains(m.Header.Get("Nats-Stream-Source"), bus.SpoolStream) {
				t.Fatalf("not forwarded from the spool: headers %v", m.Header)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the callback never reached the cluster: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mfs, err := rt.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	connected := false
	for _, mf := range mfs {
		if mf.GetName() == "kefu_ingest_spool_hub_connected" {
			connected = mf.GetMetric()[0].GetGauge().GetValue() == 1
		}
	}
	if !connected {
		t.Fatal("kefu_ingest_spool_hub_connected is not 1 (or missing) while forwarding works")
	}
	rc, ok := m.(readyChecker)
	if !ok {
		t.Fatal("the ingest module does not report the spool's readiness")
	}
	if err := rc.Ready(context.Background()); err != nil {
		t.Fatalf("spool not ready: %v", err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The embedded server cannot be cut off from ingest: the setting is
// refused rather than ignored.
func TestStoreForwardNeedsACluster(t *testing.T) {
	cfg := storeForwardConfig(t)
	b, err := bus.Open(context.Background(), busConfig(cfg, "kefu-test", zap.NewNop(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rt := &runtime{role: role{name: "ingest"}, cfg: cfg, log: zap.NewNop(), bus: b, registry: prometheus.NewRegistry(), mux: http.NewServeMux()}
	if _, err := buildIngest(context.Background(), rt); err == nil || !strings.Contains(err.Error(), "KEFU_INGEST_STORE_FORWARD") {
		t.Fatalf("buildIngest with the embedded server: %v", err)
	}
}
