package kfadmin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode"
)

// DefaultServerTimeout bounds one request of `kefu kf --server` unless
// KEFU_SERVER_TIMEOUT says otherwise.
const DefaultServerTimeout = 15 * time.Second

// maxServerURLLen bounds --server: a URL is a few dozen characters; a
// longer one is a paste gone wrong.
const maxServerURLLen = 2048

// maxCLIConfigSize bounds the config file: it holds two short strings.
const maxCLIConfigSize = 64 << 10

// RemoteConfig is where `kefu kf` sends its commands in remote mode.
type RemoteConfig struct {
	// Server is the base URL of a running kefu that serves the admin API,
	// e.g. https://kefu.example.com (a path prefix is kept).
	Server string
	// ServerFrom says where Server came from: "--server", "KEFU_SERVER"
	// or the config file's path.
	ServerFrom string
	// Token is the admin bearer token (KEFU_ADMIN_TOKEN, else the config
	// file); never a command-line flag, which would show in the shell's
	// history and in ps.
	Token string
	// Timeout bounds each request; 0 means DefaultServerTimeout.
	Timeout time.Duration
}

// CleartextWarning is a one-line warning when the token would travel
// unencrypted — plain http to a host that is not this machine — else "".
func (c RemoteConfig) CleartextWarning() string {
	u, err := url.Parse(c.Server)
	if err != nil || u.Scheme != "http" || isLoopback(u.Hostname()) {
		return ""
	}
	return "warning: " + c.Server + " is plain http: the admin token travels in clear; use https"
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ValidateServerURL checks a server URL: http or https, a host, no
// user:password (the token goes in a header, never in the URL), no query
// or fragment, at most 2048 characters. Errors wrap ErrUsage.
func ValidateServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	bad := func(why string) error {
		// Never repeat a password given in the URL.
		shown := s
		if err == nil && u.User != nil {
			shown = u.Redacted()
		} else if strings.Contains(s, "@") {
			shown = "…"
		}
		return &usageError{msg: fmt.Sprintf("kf --server %q: %s", truncate(shown, 80), why)}
	}
	if len(s) > maxServerURLLen {
		return nil, bad(fmt.Sprintf("longer than %d characters", maxServerURLLen))
	}
	switch {
	case err != nil:
		return nil, bad("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, bad("want an http:// or https:// URL, e.g. https://kefu.example.com")
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return nil, bad("no host; want e.g. https://kefu.example.com")
	case u.User != nil:
		return nil, bad("a user or password in the URL is not accepted: the token comes from KEFU_ADMIN_TOKEN")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, bad("a query or fragment is not accepted; give the base URL")
	}
	return u, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// SplitServerFlag takes --server URL (also --server=URL, -server) from the
// flags before the command words and returns the other arguments. given
// is false when there is no --server.
func SplitServerFlag(args []string) (server string, given bool, rest []string, err error) {
	rest = make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			return server, given, append(rest, args[i:]...), nil
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "server" {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 == len(args) {
				return "", false, nil, &usageError{msg: "kf: --server needs a URL, e.g. --server https://kefu.example.com"}
			}
			i++
			val = args[i]
		}
		server, given = val, true
	}
	return server, given, rest, nil
}

// CLIConfigPath is the config file of `kefu kf`:
// $XDG_CONFIG_HOME/kefu/cli.json, else ~/.config/kefu/cli.json; "" when
// neither variable is set.
func CLIConfigPath(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "kefu", "cli.json")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "kefu", "cli.json")
	}
	return ""
}

// cliConfigFile is the content of the config file.
type cliConfigFile struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// readCLIConfig reads the config file; a missing file is empty. A file
// that holds a token must be readable by its owner only.
func readCLIConfig(path string) (cliConfigFile, error) {
	var c cliConfigFile
	if path == "" {
		return c, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("kf config file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return c, fmt.Errorf("kf config file: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxCLIConfigSize+1))
	if err != nil {
		return c, fmt.Errorf("kf config file %s: %w", path, err)
	}
	if len(raw) > maxCLIConfigSize {
		return c, fmt.Errorf("kf config file %s: over %d bytes", path, maxCLIConfigSize)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("kf config file %s: %v (want {\"server\": \"https://…\", \"token\": \"…\"})", path, err)
	}
	if c.Token != "" && runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return cliConfigFile{}, fmt.Errorf("kf config file %s holds the admin token and is readable by others (mode %04o): chmod 600 %s", path, info.Mode().Perm(), path)
	}
	return c, nil
}

// ResolveRemote says whether `kefu kf` runs in remote mode and with what.
// The server comes from the --server flag, else KEFU_SERVER, else the
// config file's "server"; the token from KEFU_ADMIN_TOKEN, else the
// config file's "token"; the timeout from KEFU_SERVER_TIMEOUT. remote is
// false (direct mode) when no server is set anywhere. The config file is
// read only when the flag and the environment leave something unset.
// Mistakes in the URL or the timeout wrap ErrUsage.
func ResolveRemote(flagServer string, flagGiven bool, getenv func(string) string) (cfg RemoteConfig, remote bool, err error) {
	switch {
	case flagGiven:
		cfg.Server, cfg.ServerFrom = flagServer, "--server"
	case getenv("KEFU_SERVER") != "":
		cfg.Server, cfg.ServerFrom = getenv("KEFU_SERVER"), "KEFU_SERVER"
	}
	cfg.Token = getenv("KEFU_ADMIN_TOKEN")
	path := CLIConfigPath(getenv)
	if cfg.Server == "" || cfg.Token == "" {
		file, err := readCLIConfig(path)
		if err != nil {
			return RemoteConfig{}, false, err
		}
		if cfg.Server == "" && !flagGiven && file.Server != "" {
			cfg.Server, cfg.ServerFrom = file.Server, path
		}
		if cfg.Token == "" {
			cfg.Token = file.Token
		}
	}
	if cfg.Server == "" && !flagGiven {
		return RemoteConfig{}, false, nil
	}
	if _, err := ValidateServerURL(cfg.Server); err != nil {
		if cfg.ServerFrom != "--server" {
			err = &usageError{msg: fmt.Sprintf("%v (from %s)", err, cfg.ServerFrom)}
		}
		return RemoteConfig{}, false, err
	}
	cfg.Timeout = DefaultServerTimeout
	if v := getenv("KEFU_SERVER_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > time.Hour {
			return RemoteConfig{}, false, &usageError{msg: fmt.Sprintf("KEFU_SERVER_TIMEOUT %q: want a duration from 1ms to 1h, e.g. 30s", truncate(v, 40))}
		}
		cfg.Timeout = d
	}
	// A token pasted with its newline is still the token; one with other
	// control characters is a paste gone wrong, and no header carries it.
	cfg.Token = strings.TrimSpace(cfg.Token)
	if strings.IndexFunc(cfg.Token, unicode.IsControl) >= 0 {
		return RemoteConfig{}, false, errors.New("kf --server: the admin token holds control characters: set KEFU_ADMIN_TOKEN to the token alone")
	}
	if cfg.Token == "" {
		where := "KEFU_ADMIN_TOKEN"
		if path != "" {
			where += ", or \"token\" in " + path + " (chmod 600)"
		}
		return RemoteConfig{}, false, fmt.Errorf("kf --server %s needs the server's admin token: set %s", cfg.Server, where)
	}
	return cfg, true, nil
}
