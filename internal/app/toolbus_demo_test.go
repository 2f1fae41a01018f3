package app

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/demo"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// The lines `kefu demo` prints for `kefu kf` work as printed: with its
// admin token, `kefu kf --server` reaches the demo's admin API; with its
// variables, `kefu kf online` reaches the demo's NATS and simulated WeChat
// directly.
func TestKfAgainstTheDemoAsItSays(t *testing.T) {
	started := make(chan struct{}, 1)
	saved := demoTraffic
	demoTraffic = func(d *demo.Env, ctx context.Context) error {
		account := "xiaowang@" + demo.WeChatID
		if err := d.WeChat().AddAgent(account, "小王"); err != nil {
			return err
		}
		d.WeChat().SetAgentStatus(account, wechattest.StatusPC)
		started <- struct{}{}
		return nil
	}
	t.Cleanup(func() { demoTraffic = saved })
	toolEnv(t, "127.0.0.1:0")
	t.Setenv("KEFU_HTTP_ADDR", freeAddr(t))
	t.Setenv("KEFU_DATA_DIR", t.TempDir())
	t.Setenv("KEFU_LOG_LEVEL", "error")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &lockedBuffer{}
	go func() { done <- run(ctx, []string{"demo"}, out, io.Discard) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop")
		}
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("demo ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not start")
	}
	printed := out.String()
	remote := regexp.MustCompile(`(?m)^ +kefu kf: +KEFU_ADMIN_TOKEN=(\S+) kefu kf --server (\S+) online$`).FindStringSubmatch(printed)
	if remote == nil {
		t.Fatalf("the demo printed no kefu kf --server line:\n%s", printed)
	}
	// Through the admin API: the token and the URL, nothing else.
	t.Setenv("KEFU_ADMIN_TOKEN", remote[1])
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"kf", "--server", remote[2], "online"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "xiaowang@"+demo.WeChatID) || stderr.Len() != 0 {
		t.Fatalf("kefu kf --server with the demo's line: exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
	t.Setenv("KEFU_ADMIN_TOKEN", "")

	line := regexp.MustCompile(`(?m)^ +server host: +(.*) kefu kf online$`).FindStringSubmatch(printed)
	if line == nil {
		t.Fatalf("the demo printed no direct kefu kf line:\n%s", printed)
	}
	for _, kv := range strings.Fields(line[1]) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "KEFU_") {
			t.Fatalf("%q in the kefu kf line is not a setting", kv)
		}
		t.Setenv(k, v)
	}
	t.Setenv("KEFU_DATA_DIR", "") // the tool needs none
	stdout.Reset()
	stderr.Reset()
	if code := Main([]string{"kf", "online"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "xiaowang@"+demo.WeChatID) {
		t.Fatalf("kefu kf online with the demo's settings: exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
}
