package app

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
)

// The IP allow-list is fetched with getcallbackip, an API call: without
// KEFU_WECHAT_SECRET the role refuses to start and says so, rather than
// running without the allow-list or without the callback endpoint.
func TestIPAllowlistWithoutSecretIsAClearError(t *testing.T) {
	t.Setenv("KEFU_HTTP_ADDR", freeAddr(t))
	t.Setenv("KEFU_NATS_LISTEN", "127.0.0.1:0")
	t.Setenv("KEFU_DATA_DIR", t.TempDir())
	t.Setenv("KEFU_WECHAT_APPID", "wx1")
	t.Setenv("KEFU_WECHAT_TOKEN", "tok")
	t.Setenv("KEFU_WECHAT_IP_ALLOWLIST", "true")
	t.Setenv("KEFU_LOG_LEVEL", "error")
	for _, role := range []string{"ingest", "all"} {
		var stderr bytes.Buffer
		if code := Main([]string{role}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "KEFU_WECHAT_IP_ALLOWLIST needs KEFU_WECHAT_SECRET") {
			t.Errorf("%s: exit %d, stderr %q; want 1 naming KEFU_WECHAT_SECRET", role, code, stderr.String())
		}
	}
}

// buildIngest on a bus opened as every role opens it: the freshness window
// fits the de-duplication window, and the module shows the endpoint's
// warnings (the plaintext migration setting here) for /readyz.
func TestIngestModuleWarnsAboutTheMigrationSetting(t *testing.T) {
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KEFU_WECHAT_APPID": "wx1", "KEFU_WECHAT_TOKEN": "tok",
			"KEFU_WECHAT_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "KEFU_WECHAT_ALLOW_PLAINTEXT": "true"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bustest.Open(t, bustest.Config(func(c *bus.Config) { // kefu's own bus settings, on the test's server
		cfg.NATSURLs = c.URLs
		*c = busConfig(cfg, "kefu-test", zap.NewNop(), nil)
	}))
	rt := &runtime{role: role{name: "ingest"}, cfg: cfg, log: zap.NewNop(), bus: b, registry: prometheus.NewRegistry(), mux: http.NewServeMux()}
	m, err := buildIngest(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := m.(interface{ Warnings() []string })
	if !ok {
		t.Fatal("the ingest module does not expose Warnings")
	}
	if got := w.Warnings(); len(got) != 1 || !strings.Contains(got[0], "KEFU_WECHAT_ALLOW_PLAINTEXT") || strings.Contains(got[0], cfg.WeChatAESKey.Value()) {
		t.Fatalf("warnings %q", got)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
