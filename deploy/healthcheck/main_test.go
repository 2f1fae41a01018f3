package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	tests := []struct {
		name, httpAddr, want string
		wantErr              bool
	}{
		{name: "unset means kefu's default :8080 on loopback", httpAddr: "", want: "127.0.0.1:8080"},
		{name: "missing host means loopback", httpAddr: ":9090", want: "127.0.0.1:9090"},
		{name: "IPv4 wildcard means loopback", httpAddr: "0.0.0.0:8080", want: "127.0.0.1:8080"},
		{name: "IPv6 wildcard means loopback", httpAddr: "[::]:8080", want: "127.0.0.1:8080"},
		{name: "a specific address is dialled as is", httpAddr: "10.1.2.3:8080", want: "10.1.2.3:8080"},
		{name: "a host name is dialled as is", httpAddr: "localhost:8080", want: "localhost:8080"},
		{name: "an address without a port is refused", httpAddr: "0.0.0.0", wantErr: true},
		{name: "a named port is refused", httpAddr: ":http", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := target(tt.httpAddr)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("target(%q) = %q, want an error", tt.httpAddr, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("target(%q) = %q, %v; want %q", tt.httpAddr, got, err, tt.want)
			}
		})
	}
}

func TestStatusCode(t *testing.T) {
	tests := []struct {
		name, line string
		want       int
		wantErr    bool
	}{
		{name: "HTTP/1.1 with reason", line: "HTTP/1.1 200 OK\r\n", want: 200},
		{name: "HTTP/1.0 without reason", line: "HTTP/1.0 503\r\n", want: 503},
		{name: "not HTTP", line: "SSH-2.0-OpenSSH_9.6\r\n", wantErr: true},
		{name: "code is not a number", line: "HTTP/1.1 OK\r\n", wantErr: true},
		{name: "code is not three digits", line: "HTTP/1.1 20 OK\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := statusCode(tt.line)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("statusCode(%q) = %d, %v; want %d, error %v", tt.line, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// server answers each path with the status given; other paths get 404.
func server(t *testing.T, status map[string]int) (addr string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, ok := status[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestProbe(t *testing.T) {
	addr := server(t, map[string]int{"/healthz": 200, "/readyz": 503, "/created": 201})
	tests := []struct {
		name, path    string
		wantUnhealthy bool
	}{
		{name: "200 is healthy", path: "/healthz"},
		{name: "any 2xx is healthy", path: "/created"},
		{name: "503 while draining or without NATS is unhealthy", path: "/readyz", wantUnhealthy: true},
		{name: "404 of a wrong path is unhealthy", path: "/nope", wantUnhealthy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probe(addr, tt.path, 5*time.Second)
			if got := errors.Is(err, errUnhealthy); got != tt.wantUnhealthy || (!tt.wantUnhealthy && err != nil) {
				t.Fatalf("probe(%s) = %v; want unhealthy %v", tt.path, err, tt.wantUnhealthy)
			}
		})
	}
}

func TestProbeWithoutAnHTTPAnswerFails(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	garbage, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { garbage.Close() })
	go func() {
		for {
			c, err := garbage.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 smtp.example.com ESMTP\r\n"))
			c.Close()
		}
	}()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	tests := []struct{ name, addr string }{
		{name: "nothing listens on the port", addr: closedAddr},
		{name: "something other than HTTP answers", addr: garbage.Addr().String()},
		{name: "the server accepts but never answers", addr: silent.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probe(tt.addr, "/healthz", 200*time.Millisecond)
			if err == nil {
				t.Fatal("probe succeeded, want an error")
			}
			if errors.Is(err, errUnhealthy) {
				t.Fatalf("probe = %v; no answer is not an unhealthy answer", err)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	addr := server(t, map[string]int{"/healthz": 200, "/readyz": 503})
	_, port, _ := net.SplitHostPort(addr)
	env := func(httpAddr string) func(string) string {
		return func(name string) string {
			if name == "KEFU_HTTP_ADDR" {
				return httpAddr
			}
			return ""
		}
	}
	tests := []struct {
		name     string
		args     []string
		httpAddr string
		want     int
	}{
		{name: "healthy default path exits 0", args: nil, httpAddr: ":" + port, want: 0},
		{name: "wildcard listen address is probed on loopback", args: []string{"/healthz"}, httpAddr: "0.0.0.0:" + port, want: 0},
		{name: "unready exits 1", args: []string{"/readyz"}, httpAddr: ":" + port, want: 1},
		{name: "relative path is a usage error", args: []string{"readyz"}, httpAddr: ":" + port, want: 2},
		{name: "two arguments are a usage error", args: []string{"/healthz", "/readyz"}, httpAddr: ":" + port, want: 2},
		{name: "bad KEFU_HTTP_ADDR is a usage error", args: nil, httpAddr: "nonsense", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got := run(tt.args, env(tt.httpAddr), &stderr)
			if got != tt.want {
				t.Fatalf("run(%q) with KEFU_HTTP_ADDR=%q = %d (stderr %q), want %d", tt.args, tt.httpAddr, got, stderr.String(), tt.want)
			}
			if (got == 0) != (stderr.Len() == 0) {
				t.Fatalf("stderr %q: want one line exactly when the exit code is not 0", stderr.String())
			}
			if got != 0 && strings.Count(stderr.String(), "\n") != 1 {
				t.Fatalf("stderr %q: want one line", stderr.String())
			}
		})
	}
}
