package app

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An open console stream does not hold the shutdown: the server ends it
// when it shuts down instead of waiting for it until its share of the
// grace period runs out.
func TestConsoleStreamEndsAtShutdown(t *testing.T) {
	httpAddr := freeAddr(t)
	t.Setenv("KEFU_HTTP_ADDR", httpAddr)
	t.Setenv("KEFU_NATS_LISTEN", "127.0.0.1:0")
	t.Setenv("KEFU_DATA_DIR", t.TempDir())
	t.Setenv("KEFU_API_TOKEN", "console-test-read-token")
	t.Setenv("KEFU_SHUTDOWN_GRACE", "6s")
	t.Setenv("KEFU_LOG_LEVEL", "warn")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"all"}, &lockedBuffer{}, logs) }()
	base := "http://" + httpAddr
	waitHTTP(t, base+"/readyz", 200)

	resp, err := http.Post(base+"/console/api/login", "application/json", strings.NewReader(`{"token":"console-test-read-token"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", base+"/console/api/events", nil)
	req.AddCookie(resp.Cookies()[0])
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	sc := bufio.NewScanner(stream.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && sc.Text() != "event: state" {
	}
	if sc.Err() != nil {
		t.Fatalf("no state event: %v", sc.Err())
	}

	stopped := time.Now()
	cancel()
	ended := make(chan time.Duration, 1)
	go func() {
		for sc.Scan() {
		}
		ended <- time.Since(stopped)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop")
	}
	select {
	case took := <-ended:
		if took > 2500*time.Millisecond { // the HTTP share of a 6 s grace is 2.1 s after the 0.6 s unready pause
			t.Errorf("the stream ended %s after the signal: the shutdown waited for it", took)
		}
	case <-time.After(time.Second):
		t.Fatal("the stream outlived the process")
	}
	if strings.Contains(logs.String(), "http requests still running") {
		t.Errorf("the shutdown waited for the console stream:\n%s", logs.String())
	}
}
