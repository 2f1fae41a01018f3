package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest"
)

func TestHelpListsEveryRoleAndCommandAndNothingElse(t *testing.T) {
	var out bytes.Buffer
	if code := Main([]string{"help"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, r := range roles {
		if !strings.Contains(out.String(), "  "+r.name+" ") {
			t.Errorf("help misses role %s", r.name)
		}
		if len(r.modules) == 0 {
			t.Errorf("role %s runs nothing", r.name)
		}
		for _, m := range r.modules {
			if _, err := buildModule(context.Background(), &runtime{role: r}, m); err != nil && strings.Contains(err.Error(), "unknown module") {
				t.Errorf("role %s lists module %s that does not exist", r.name, m)
			}
		}
	}
	for _, c := range commands() {
		if !strings.Contains(out.String(), "  "+c.name+" ") {
			t.Errorf("help misses command %s", c.name)
		}
	}
	if !strings.Contains(out.String(), "KEFU_NATS_URL") {
		t.Error("help must list the configuration")
	}
}

func TestCommandLineMistakes(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		stderrRE string
	}{
		{"no command is a usage error", nil, nil, 2, "no command given"},
		{"unknown command is a usage error", []string{"launch"}, nil, 2, `unknown command "launch"`},
		{"unknown flag is a usage error", []string{"ingest", "--colour", "red"}, nil, 2, "flag provided but not defined"},
		{"invalid setting names the variable", []string{"all"}, map[string]string{"KEFU_LOG_LEVEL": "loud"}, 1, "KEFU_LOG_LEVEL"},
		{"invalid flag value names the variable", []string{"all", "--log-format", "xml"}, nil, 2, "KEFU_LOG_FORMAT"},
		{"a role refuses to start without its settings", []string{"ingest"}, nil, 1, "KEFU_WECHAT_APPID is required by ingest"},
		{"the token is required too", []string{"ingest"}, map[string]string{"KEFU_WECHAT_APPID": "wx1"}, 1, "KEFU_WECHAT_TOKEN is required by ingest"},
		{"a half-configured Tucao poller names what is missing", []string{"ingest"},
			map[string]string{"KEFU_WECHAT_APPID": "wx1", "KEFU_WECHAT_TOKEN": "t", "KEFU_TUCAO_PRODUCT_ID": "1234"}, 1, "KEFU_TUCAO_SECRET is required by ingest"},
		{"kf needs a subcommand", []string{"kf"}, nil, 2, "kf needs a subcommand"},
		{"an unknown kf subcommand is a usage error", []string{"kf", "bogus"}, map[string]string{"KEFU_NATS_LISTEN": "127.0.0.1:1", "KEFU_DATA_DIR": "@tmp"}, 2, `unknown kf command "bogus"`},
		{"kf names the missing WeChat setting", []string{"kf", "online"}, map[string]string{"KEFU_NATS_LISTEN": "127.0.0.1:1", "KEFU_DATA_DIR": "@tmp"}, 1, "KEFU_WECHAT_APPID is required by kf"},
		{"backfill needs its window", []string{"ingest", "--tucao-backfill", "--from", "2026-01-01"}, nil, 2, "--tucao-backfill needs --from YYYY-MM-DD and --to YYYY-MM-DD"},
		{"a window needs backfill", []string{"ingest", "--from", "2026-01-01"}, nil, 2, "--from and --to go with --tucao-backfill"},
		{"backfill needs Tucao settings", []string{"ingest", "--tucao-backfill", "--from", "2026-01-01", "--to", "2026-01-02"}, nil, 1, "KEFU_TUCAO_PRODUCT_ID is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				if v == "@tmp" {
					v = t.TempDir()
				}
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			code := Main(tt.args, io.Discard, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderrRE) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tt.stderrRE)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if Main([]string{"version"}, &out, io.Discard) != 0 || !strings.HasPrefix(out.String(), "kefu ") {
		t.Fatalf("version printed %q", out.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHTTP waits until url answers want and returns the body it did.
func waitHTTP(t *testing.T, url string, want int) string {
	t.Helper()
	var body string
	var last error
	natstest.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(url)
		if last = err; err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return resp.StatusCode == want
	}, "%s answering %d (last error: %v)", url, want, lazy(func() string { return fmt.Sprint(last) }))
	return body
}

// `kefu all` with nothing configured but the callback account starts an
// embedded NATS server, serves health, readiness and metrics, and shuts
// down cleanly on a signal.
func TestAllStartsServesAndStops(t *testing.T) {
	httpAddr := freeAddr(t)
	t.Setenv("KEFU_HTTP_ADDR", httpAddr)
	t.Setenv("KEFU_NATS_LISTEN", "127.0.0.1:0")
	t.Setenv("KEFU_DATA_DIR", t.TempDir())
	t.Setenv("KEFU_WECHAT_APPID", "wx1")
	t.Setenv("KEFU_WECHAT_TOKEN", "tok")
	t.Setenv("KEFU_LOG_LEVEL", "error")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, []string{"all"}, io.Discard, &stderr) }()

	base := "http://" + httpAddr
	waitHTTP(t, base+"/readyz", 200)
	waitHTTP(t, base+"/healthz", 200)
	metrics := waitHTTP(t, base+"/metrics", 200)
	for _, name := range []string{"kefu_ingest_publish_seconds", "go_goroutines"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	resp, err := http.Post(base+"/wechat/callback", "text/xml", strings.NewReader("<xml/>"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned callback answered %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v (%s)", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("HTTP still served after shutdown")
	}
}

func TestFlagNames(t *testing.T) {
	for env, flag := range map[string]string{"KEFU_HTTP_ADDR": "http-addr", "KEFU_NATS_URL": "nats-url", "KEFU_WECHAT_AES_KEY": "wechat-aes-key"} {
		if got := flagName(env); got != flag {
			t.Errorf("%s → %s, want %s", env, got, flag)
		}
	}
}
