package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/pkg/events"
)

// demoHost is a Host without kefu: it records what the demo listens to
// and which traffic it starts.
type demoHost struct {
	Host
	out      bytes.Buffer
	subjects []string
	handle   func(*nats.Msg)
	unlisten int
	traffic  int
}

func newDemoHost(cfg config.Config) *demoHost {
	h := &demoHost{}
	h.Host = Host{
		Out: &h.out, Config: cfg, HTTPURL: "http://127.0.0.1:8080", NATSURL: "nats://127.0.0.1:4222",
		ConsoleLinks: func() (string, string, error) {
			return "http://127.0.0.1:8080/console/#code=A", "http://127.0.0.1:8080/console/#code=R", nil
		},
		Listen: func(_ context.Context, subjects []string, handle func(*nats.Msg)) (func(), error) {
			h.subjects, h.handle = subjects, handle
			return func() { h.unlisten++ }, nil
		},
		Traffic: func(*Env, context.Context) error { h.traffic++; return nil },
	}
	return h
}

// clearSettings makes the demo see a newcomer's environment.
func clearSettings(t *testing.T) {
	for _, k := range []string{"KEFU_DATA_DIR", "KEFU_LOG_FORMAT", "KEFU_LOG_LEVEL", "KEFU_QUEUE_STALE_AFTER"} {
		t.Setenv(k, "")
	}
}

// A newcomer gives nothing: the demo makes up a data directory and tokens,
// points kefu at the simulated WeChat and Tucao, prints how to reach all of
// it, prints the events, and removes its data when closed.
func TestDemoFillsWhatANewcomerHasNotGiven(t *testing.T) {
	clearSettings(t)
	cfg := config.Config{NATSListen: "127.0.0.1:0"}
	d, err := Prepare(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if cfg.DataDir == "" || cfg.AdminToken == "" || cfg.APIToken == "" || cfg.AdminToken == cfg.APIToken {
		t.Fatalf("data dir %q, admin token %q, API token %q: want a directory and two different tokens", cfg.DataDir, cfg.AdminToken, cfg.APIToken)
	}
	if cfg.WeChatAppID != appID || !strings.HasPrefix(cfg.WeChatAPIBase, "http://127.0.0.1:") || cfg.TucaoAPIBase != d.TucaoURL() || d.TucaoURL() == "" {
		t.Fatalf("WeChat %q at %q, Tucao at %q (simulated Tucao %q)", cfg.WeChatAppID, cfg.WeChatAPIBase, cfg.TucaoAPIBase, d.TucaoURL())
	}
	if cfg.LogFormat != "console" || cfg.LogLevel != "warn" || cfg.StaleAfter != time.Minute {
		t.Fatalf("log %s/%s, stale after %s", cfg.LogFormat, cfg.LogLevel, cfg.StaleAfter)
	}

	h := newDemoHost(cfg)
	if err := d.Start(context.Background(), h.Host); err != nil {
		t.Fatal(err)
	}
	printed := h.out.String()
	for _, want := range []string{
		"kefu demo is running.\n  kefu HTTP        http://127.0.0.1:8080  (/readyz, /metrics, /wechat/callback, /api/…)\n" +
			"  console          http://127.0.0.1:8080/console/  (sign in with a token below, or open a one-time link)\n" +
			"    admin:         http://127.0.0.1:8080/console/#code=A\n    read-only:     http://127.0.0.1:8080/console/#code=R\n",
		"  API tokens       read-only (GET)     " + string(cfg.APIToken) + "\n                   admin (any method)  " + string(cfg.AdminToken) + "\n",
		`    try:           curl -H "Authorization: Bearer ` + string(cfg.APIToken) + `" http://127.0.0.1:8080/api/kf/queue` + "\n",
		"    kefu kf:       KEFU_ADMIN_TOKEN=" + string(cfg.AdminToken) + " kefu kf --server http://127.0.0.1:8080 online\n",
		"    server host:   KEFU_NATS_URL=nats://127.0.0.1:4222 KEFU_WECHAT_APPID=" + appID + " KEFU_WECHAT_SECRET=" + appSecret + " KEFU_WECHAT_API_BASE=" + cfg.WeChatAPIBase + " kefu kf online\n",
		"  simulated Tucao  " + d.TucaoURL() + "\n",
		"  data             " + cfg.DataDir + " (removed on exit)\n",
		"sessions an agent forgot are swept after 1m0s; posts appear on Tucao.\nPress Ctrl-C to stop.\n\n",
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("the demo did not print %q:\n%s", want, printed)
		}
	}
	if h.traffic != 1 || len(h.subjects) != 1 || h.subjects[0] != "kefu.>" {
		t.Fatalf("traffic started %d times, listening to %q", h.traffic, h.subjects)
	}

	data, _ := json.Marshal(events.QueueJoined{OpenID: "o-1"})
	h.out.Reset()
	h.handle(&nats.Msg{Subject: events.SubjectQueueJoined, Data: data})
	if got := h.out.String(); !strings.HasSuffix(got, "  "+events.SubjectQueueJoined+strings.Repeat(" ", 34-len(events.SubjectQueueJoined))+" o-1 joined the queue\n") {
		t.Errorf("event printed as %q", got)
	}

	d.Stop()
	if h.unlisten != 1 {
		t.Errorf("Stop stopped listening %d times, want once", h.unlisten)
	}
	d.Close()
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Errorf("the demo's data %s is still there (%v)", cfg.DataDir, err)
	}
}

// Settings the user gave win, and tokens the user set are never printed.
func TestDemoKeepsTheUsersSettings(t *testing.T) {
	clearSettings(t)
	dir := t.TempDir()
	t.Setenv("KEFU_DATA_DIR", dir)
	cfg := config.Config{NATSListen: "127.0.0.1:0", DataDir: dir, AdminToken: "users-admin-secret", APIToken: "users-api-secret"}
	d, err := Prepare(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if cfg.DataDir != dir || cfg.AdminToken != "users-admin-secret" || cfg.APIToken != "users-api-secret" {
		t.Fatalf("the demo changed the user's settings: %q %q %q", cfg.DataDir, cfg.AdminToken, cfg.APIToken)
	}
	h := newDemoHost(cfg)
	h.ConsoleLinks = nil
	if err := d.Start(context.Background(), h.Host); err != nil {
		t.Fatal(err)
	}
	printed := h.out.String()
	if strings.Contains(printed, "users-admin-secret") || strings.Contains(printed, "users-api-secret") {
		t.Errorf("the demo printed a token the user set:\n%s", printed)
	}
	for _, want := range []string{
		"read-only (GET)     (your KEFU_API_TOKEN)\n", "admin (any method)  (your KEFU_ADMIN_TOKEN)\n",
		`Bearer $KEFU_API_TOKEN"`, "kefu kf --server http://127.0.0.1:8080 online   (with your KEFU_ADMIN_TOKEN)\n",
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("the demo did not print %q:\n%s", want, printed)
		}
	}
	if strings.Contains(printed, "/console/") {
		t.Errorf("the demo printed console links without a console:\n%s", printed)
	}
	d.Stop()
	d.Close()
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the demo removed the user's data directory: %v", err)
	}
}
