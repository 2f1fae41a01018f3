package httpedge_test

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/httpedge"
)

func TestNewServerSetsEveryLimit(t *testing.T) {
	s := httpedge.NewServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout != 5*time.Second || s.ReadTimeout != 30*time.Second || s.WriteTimeout != 30*time.Second ||
		s.IdleTimeout != 2*time.Minute || s.MaxHeaderBytes != 64<<10 {
		t.Fatalf("limits %v %v %v %v %d", s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes)
	}
}

func TestNewServerRefusesOversizedHeaders(t *testing.T) {
	var reached atomic.Bool
	s := httpedge.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Store(true) }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	url := "http://" + ln.Addr().String() + "/wechat/callback"

	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 4<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !reached.Load() {
		t.Fatalf("a request with 4 KiB of headers: %d", resp.StatusCode)
	}
	reached.Store(false)
	req, _ = http.NewRequest("GET", url, nil)
	req.Header.Set("X-Padding", strings.Repeat("a", httpedge.MaxHeaderBytes+8<<10))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || reached.Load() {
		t.Fatalf("headers over the limit: %d (handler reached %v), want 431", resp.StatusCode, reached.Load())
	}
}
