package app

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/config"
)

// `kefu all` with KEFU_NATS_USER and KEFU_NATS_PASSWORD runs its embedded
// server for those credentials only: its own roles connect (it becomes
// ready), a client without them or with another password is refused, and
// the password appears nowhere in its output.
func TestAllRequiresTheNATSCredentialsOfEveryClient(t *testing.T) {
	const password = "pw-app-7e41c2"
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	t.Setenv("KEFU_HTTP_ADDR", httpAddr)
	t.Setenv("KEFU_NATS_LISTEN", natsAddr)
	t.Setenv("KEFU_NATS_USER", "kefu")
	t.Setenv("KEFU_NATS_PASSWORD", password)
	t.Setenv("KEFU_DATA_DIR", t.TempDir())
	t.Setenv("KEFU_WECHAT_APPID", "wx1")
	t.Setenv("KEFU_WECHAT_TOKEN", "tok")
	t.Setenv("KEFU_LOG_LEVEL", "debug")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stdout, stderr lockedBuffer
	go func() { done <- run(ctx, []string{"all"}, &stdout, &stderr) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("did not stop")
		}
		if out := stdout.String() + stderr.String(); strings.Contains(out, password) {
			t.Errorf("the password is in kefu's output:\n%s", out)
		}
	}()
	waitHTTP(t, "http://"+httpAddr+"/readyz", 200)

	url := "nats://" + natsAddr
	for _, tc := range []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"no credentials", nil, false},
		{"wrong password", []nats.Option{nats.UserInfo("kefu", password+"x")}, false},
		{"kefu's credentials", []nats.Option{nats.UserInfo("kefu", password)}, true},
	} {
		nc, err := nats.Connect(url, append(tc.opts, nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
		}
		if tc.ok && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: connect error %v, want %v", tc.name, err, nats.ErrAuthorization)
		}
	}

	// A command-line tool reaches the running server with the same settings.
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openCLIBus(context.Background(), cfg)
	if err != nil {
		t.Fatalf("kefu kf's connection: %v", err)
	}
	defer b.Close()
	if b.Embedded() {
		t.Error("the command started a server of its own instead of using the running one")
	}
}
