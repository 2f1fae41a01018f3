package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
)

// lockedBuffer is a log destination the test reads while kefu writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// `kefu ingest` with Tucao configured serves the webhook at the path
// KEFU_TUCAO_WEBHOOK_SECRET asks for, and nowhere else, and says so at
// start-up without printing the secret.
func TestTucaoWebhookIsServedWhereTheSecretSays(t *testing.T) {
	const secret = "hook-0123456789abcdef"
	tests := []struct {
		name, secret, log string
		status            map[string]int // path → status of a POST
		served            string
	}{
		{"without a secret at /tucao/webhook", "", `tucao webhook served at /tucao/webhook (`,
			map[string]int{"/tucao/webhook/" + secret: 404}, "/tucao/webhook"},
		{"with a secret only at /tucao/webhook/<secret>", secret, `tucao webhook served at /tucao/webhook/<KEFU_TUCAO_WEBHOOK_SECRET> only`,
			map[string]int{"/tucao/webhook": 404, "/tucao/webhook/": 404, "/tucao/webhook/hook-0123456789abcdeg": 404}, "/tucao/webhook/" + secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := tucaotest.New(tucaotest.Options{RateLimit: -1})
			t.Cleanup(fake.Close)
			fake.Generate(3, 1)
			httpAddr := freeAddr(t)
			t.Setenv("KEFU_HTTP_ADDR", httpAddr)
			t.Setenv("KEFU_NATS_LISTEN", "127.0.0.1:0")
			t.Setenv("KEFU_DATA_DIR", t.TempDir())
			t.Setenv("KEFU_WECHAT_APPID", "wx1")
			t.Setenv("KEFU_WECHAT_TOKEN", "tok")
			t.Setenv("KEFU_TUCAO_PRODUCT_ID", fake.ProductID())
			t.Setenv("KEFU_TUCAO_SECRET", fake.Secret())
			t.Setenv("KEFU_TUCAO_API_BASE", fake.URL())
			t.Setenv("KEFU_TUCAO_POLL_INTERVAL", "1h")
			t.Setenv("KEFU_TUCAO_WEBHOOK_SECRET", tt.secret)
			t.Setenv("KEFU_LOG_LEVEL", "info")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			var logs lockedBuffer
			go func() { done <- run(ctx, []string{"ingest"}, io.Discard, &logs) }()

			base := "http://" + httpAddr
			waitHTTP(t, base+"/healthz", 200)
			natstest.Eventually(t, 20*time.Second, func() bool { return fake.RequestCount() == 1 }, "the start-up poll: 1 request to the fake Tucao, seen %s", lazy(func() string { return fmt.Sprint(fake.RequestCount()) }))
			for path, want := range tt.status {
				if got := postStatus(t, base+path, `{"type":"post.created"}`); got != want {
					t.Errorf("POST %s: %d, want %d", path, got, want)
				}
			}
			if got := postStatus(t, base+tt.served, `{"type":"post.created"}`); got != 200 {
				t.Fatalf("POST %s: %d, want 200", tt.served, got)
			}
			// The webhook at the served path polls; the refused ones did
			// not, or the limiter would have throttled this one.
			natstest.Eventually(t, 20*time.Second, func() bool { return fake.RequestCount() == 2 }, "the webhook's poll: 2 requests to the fake Tucao, seen %s", lazy(func() string { return fmt.Sprint(fake.RequestCount()) }))

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("did not stop")
			}
			out := logs.String()
			if !strings.Contains(out, tt.log) {
				t.Errorf("the start-up log does not say %q:\n%s", tt.log, out)
			}
			if strings.Contains(out, secret) {
				t.Errorf("the log shows the webhook secret:\n%s", out)
			}
		})
	}
}

func postStatus(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
