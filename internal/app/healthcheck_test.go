package app

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthcheckAddr(t *testing.T) {
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
			got, err := healthcheckAddr(tt.httpAddr)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("healthcheckAddr(%q) = %q, want an error", tt.httpAddr, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("healthcheckAddr(%q) = %q, %v; want %q", tt.httpAddr, got, err, tt.want)
			}
		})
	}
}

func TestHealthcheckURL(t *testing.T) {
	tests := []struct {
		name, target, httpAddr, want string
		wantErr                      bool
	}{
		{name: "a path goes to KEFU_HTTP_ADDR's port on loopback", target: "/readyz", httpAddr: ":9090", want: "http://127.0.0.1:9090/readyz"},
		{name: "a path keeps its query", target: "/readyz?verbose=1", httpAddr: "", want: "http://127.0.0.1:8080/readyz?verbose=1"},
		{name: "an http URL is asked as it is", target: "http://10.0.0.5:8080/healthz", httpAddr: "nonsense", want: "http://10.0.0.5:8080/healthz"},
		{name: "an https URL is asked as it is", target: "https://kefu.example.com/healthz", want: "https://kefu.example.com/healthz"},
		{name: "a relative path is refused", target: "readyz", wantErr: true},
		{name: "another scheme is refused", target: "ftp://host/healthz", wantErr: true},
		{name: "a URL without a host is refused", target: "http:///healthz", wantErr: true},
		{name: "spaces are refused", target: "/ready z", wantErr: true},
		{name: "a path with a bad KEFU_HTTP_ADDR is refused", target: "/healthz", httpAddr: "nonsense", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := healthcheckURL(tt.target, tt.httpAddr)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("healthcheckURL(%q, %q) = %q, %v; want %q, error %v", tt.target, tt.httpAddr, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// healthServer answers each path with the status given; other paths get 404.
func healthServer(t *testing.T, status map[string]int) (addr string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, ok := status[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/healthz")
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestProbeHealth(t *testing.T) {
	addr := healthServer(t, map[string]int{"/healthz": 200, "/readyz": 503, "/created": 201, "/moved": 302})
	tests := []struct {
		name, path    string
		wantUnhealthy bool
	}{
		{name: "200 is healthy", path: "/healthz"},
		{name: "any 2xx is healthy", path: "/created"},
		{name: "503 while draining or without NATS is unhealthy", path: "/readyz", wantUnhealthy: true},
		{name: "404 of a wrong path is unhealthy", path: "/nope", wantUnhealthy: true},
		{name: "a redirect is not followed: unhealthy", path: "/moved", wantUnhealthy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probeHealth(context.Background(), "http://"+addr+tt.path, 5*time.Second)
			if got := errors.Is(err, errUnhealthy); got != tt.wantUnhealthy || (!tt.wantUnhealthy && err != nil) {
				t.Fatalf("probeHealth(%s) = %v; want unhealthy %v", tt.path, err, tt.wantUnhealthy)
			}
		})
	}
}

func TestProbeHealthWithoutAnHTTPAnswerFails(t *testing.T) {
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
			start := time.Now()
			err := probeHealth(context.Background(), "http://"+tt.addr+"/healthz", 200*time.Millisecond)
			if err == nil {
				t.Fatal("probe succeeded, want an error")
			}
			if errors.Is(err, errUnhealthy) {
				t.Fatalf("probe = %v; no answer is not an unhealthy answer", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("probe took %s with a 200ms timeout", took)
			}
		})
	}
}

func TestHealthcheckExitCodes(t *testing.T) {
	addr := healthServer(t, map[string]int{"/healthz": 200, "/readyz": 503})
	_, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		name     string
		args     []string
		httpAddr string
		want     int
	}{
		{name: "healthy default path exits 0", args: nil, httpAddr: ":" + port, want: 0},
		{name: "wildcard listen address is probed on loopback", args: []string{"/healthz"}, httpAddr: "0.0.0.0:" + port, want: 0},
		{name: "a full URL needs no KEFU_HTTP_ADDR", args: []string{"http://" + addr + "/healthz"}, httpAddr: "nonsense", want: 0},
		{name: "--timeout before the path", args: []string{"--timeout", "2s", "/healthz"}, httpAddr: ":" + port, want: 0},
		{name: "--timeout after the path", args: []string{"/healthz", "--timeout=2s"}, httpAddr: ":" + port, want: 0},
		{name: "unready exits 1", args: []string{"/readyz"}, httpAddr: ":" + port, want: 1},
		{name: "relative path is a usage error", args: []string{"readyz"}, httpAddr: ":" + port, want: 2},
		{name: "two arguments are a usage error", args: []string{"/healthz", "/readyz"}, httpAddr: ":" + port, want: 2},
		{name: "bad KEFU_HTTP_ADDR is a usage error", args: nil, httpAddr: "nonsense", want: 2},
		{name: "a zero timeout is a usage error", args: []string{"--timeout", "0s"}, httpAddr: ":" + port, want: 2},
		{name: "an unknown flag is a usage error", args: []string{"--nope"}, httpAddr: ":" + port, want: 2},
		{name: "--help exits 0", args: []string{"--help"}, httpAddr: "nonsense", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KEFU_HTTP_ADDR", tt.httpAddr)
			var stdout, stderr bytes.Buffer
			got := mainContext(context.Background(), append([]string{"healthcheck"}, tt.args...), &stdout, &stderr)
			if got != tt.want {
				t.Fatalf("kefu healthcheck %q with KEFU_HTTP_ADDR=%q = %d (stderr %q), want %d", tt.args, tt.httpAddr, got, stderr.String(), tt.want)
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

func TestHealthcheckTimeoutFlagBoundsTheProbe(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	start := time.Now()
	err = healthcheck(context.Background(), []string{"--timeout", "300ms", "http://" + silent.Addr().String() + "/healthz"}, func(string) string { return "" }, &bytes.Buffer{})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Fatalf("healthcheck against a silent server = %v, want no answer within 300ms", err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("healthcheck took %s, want about 300ms", took)
	}
}
