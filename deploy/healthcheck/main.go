// Command healthcheck asks a kefu process in the same container whether it
// is healthy. kefu's image is distroless — no shell, no curl, no wget — so
// Docker's HEALTHCHECK and compose's healthcheck run this small static
// binary instead (Kubernetes needs none of it: its probes are HTTP GETs).
//
// Usage:
//
//	healthcheck [path]
//
// It sends GET <path> (default /healthz; compose uses /readyz) to the port
// of KEFU_HTTP_ADDR (default :8080) on 127.0.0.1 when kefu listens on every
// interface, and exits 0 on a 2xx answer, 1 otherwise with one line on
// stderr saying why, 2 on a usage error.
//
// It speaks just enough HTTP/1.0 by hand rather than importing net/http,
// which keeps it near 2 MB instead of near 6 MB in every image.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// defaultAddr is kefu's default KEFU_HTTP_ADDR (DESIGN §3).
const defaultAddr = ":8080"

// timeout bounds the whole probe; Docker's own --timeout should be longer.
const timeout = 2 * time.Second

// errUnhealthy marks an answer that is not 2xx, as opposed to no answer.
var errUnhealthy = errors.New("unhealthy")

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	path := "/healthz"
	switch len(args) {
	case 0:
	case 1:
		path = args[0]
	default:
		fmt.Fprintln(stderr, "usage: healthcheck [path]")
		return 2
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
		fmt.Fprintf(stderr, "healthcheck: path %q must start with / and contain no spaces\n", path)
		return 2
	}
	addr, err := target(getenv("KEFU_HTTP_ADDR"))
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 2
	}
	if err := probe(addr, path, timeout); err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	return 0
}

// target turns kefu's listen address into the address to dial: a
// wildcard or missing host becomes 127.0.0.1, since the probe runs in
// kefu's own network namespace.
func target(httpAddr string) (string, error) {
	if httpAddr == "" {
		httpAddr = defaultAddr
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", fmt.Errorf("KEFU_HTTP_ADDR %q: %w", httpAddr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("KEFU_HTTP_ADDR %q: port %q is not a number", httpAddr, port)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// probe sends one GET and checks the status line of the answer.
func probe(addr, path string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	req := "GET " + path + " HTTP/1.0\r\nHost: " + addr + "\r\nUser-Agent: kefu-healthcheck\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	// The status line is all we need; bound the read so a wrong service on
	// the port cannot make us buffer without end.
	line, err := bufio.NewReader(io.LimitReader(conn, 512)).ReadString('\n')
	if err != nil {
		return fmt.Errorf("GET %s: read status line: %w", path, err)
	}
	code, err := statusCode(line)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if code < 200 || code > 299 {
		return fmt.Errorf("GET %s: %w: %s", path, errUnhealthy, strings.TrimSpace(line))
	}
	return nil
}

// statusCode parses "HTTP/1.1 200 OK".
func statusCode(line string) (int, error) {
	proto, rest, ok := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/") {
		return 0, fmt.Errorf("not an HTTP status line: %q", line)
	}
	codeText, _, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || len(codeText) != 3 {
		return 0, fmt.Errorf("not an HTTP status code: %q", codeText)
	}
	return code, nil
}
