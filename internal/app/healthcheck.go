package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// healthcheckDefaultTimeout bounds the whole probe; Docker's own
// --timeout should be longer.
const healthcheckDefaultTimeout = 3 * time.Second

// healthcheckDefaultAddr is kefu's default KEFU_HTTP_ADDR (README.md, "Configuration").
const healthcheckDefaultAddr = ":8080"

// errUnhealthy marks an answer that is not 2xx, as opposed to no answer.
var errUnhealthy = errors.New("unhealthy")

// runHealthcheck is `kefu healthcheck [URL|/path] [--timeout 3s]`: one GET,
// exit 0 on a 2xx answer, 1 otherwise with one line on stderr, 2 on a
// usage mistake. kefu's image is distroless — no shell, no curl — so
// Docker's HEALTHCHECK and compose's healthcheck run this instead
// (Kubernetes needs none of it: its probes are HTTP GETs). It loads no
// configuration, opens no NATS connection and touches no file: it reads
// KEFU_HTTP_ADDR alone, to find the port of a path given without a host.
func runHealthcheck(ctx context.Context, args []string, stdout, _ io.Writer) error {
	return healthcheck(ctx, args, os.Getenv, stdout)
}

func healthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("kefu healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", healthcheckDefaultTimeout, "how long the whole probe may take")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kefu healthcheck [URL | /path] [--timeout 3s]\n\n"+
			"GET the URL and exit 0 on a 2xx answer, 1 otherwise (one line on stderr), 2 on a usage mistake.\n"+
			"Default: /healthz. A path alone is asked of 127.0.0.1 on KEFU_HTTP_ADDR's port (default :8080),\n"+
			"or of KEFU_HTTP_ADDR's host when it names one. No configuration is loaded and nothing else is contacted.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Flags may come before or after the URL.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fs.Usage()
				return err
			}
			return usageError{"healthcheck: " + err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) == 1 && positional[0] == "help" {
		fs.SetOutput(stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	if len(positional) > 1 {
		return usageError{fmt.Sprintf("healthcheck takes one URL or path, got %d arguments", len(positional))}
	}
	if *timeout <= 0 {
		return usageError{fmt.Sprintf("healthcheck: --timeout %s: want a positive duration", *timeout)}
	}
	target := "/healthz"
	if len(positional) == 1 {
		target = positional[0]
	}
	u, err := healthcheckURL(target, getenv("KEFU_HTTP_ADDR"))
	if err != nil {
		return usageError{"healthcheck: " + err.Error()}
	}
	return probeHealth(ctx, u, *timeout)
}

// healthcheckURL turns the argument into the URL to GET: an absolute
// http(s) URL as it is, a path on KEFU_HTTP_ADDR (see healthcheckAddr).
func healthcheckURL(target, httpAddr string) (string, error) {
	if strings.ContainsAny(target, " \r\n\t") {
		return "", fmt.Errorf("%q must contain no spaces", target)
	}
	if strings.HasPrefix(target, "/") {
		addr, err := healthcheckAddr(httpAddr)
		if err != nil {
			return "", err
		}
		return "http://" + addr + target, nil
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is neither a path starting with / nor an http(s) URL", target)
	}
	return target, nil
}

// healthcheckAddr turns kefu's listen address into the address to dial: a
// wildcard or missing host becomes 127.0.0.1, since the probe runs in
// kefu's own network namespace.
func healthcheckAddr(httpAddr string) (string, error) {
	if httpAddr == "" {
		httpAddr = healthcheckDefaultAddr
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

// probeHealth sends one GET within timeout and wants a 2xx answer.
// Redirects are not followed (a 3xx is unhealthy) and no proxy from the
// environment is used: the probe asks the process it names, nothing else.
func probeHealth(ctx context.Context, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	req.Header.Set("User-Agent", "kefu-healthcheck")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.DisableKeepAlives = true
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("GET %s: no answer within %s", target, timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("GET %s: %w", target, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %w: %s", target, errUnhealthy, resp.Status)
	}
	return nil
}
