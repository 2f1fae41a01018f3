package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
)

// toolConnectTimeout bounds how long a command-line tool waits for NATS,
// the TCP connect and the handshake included: a port that is not NATS
// fails in this time instead of hanging.
const toolConnectTimeout = 2 * time.Second

// toolTarget is the NATS a command-line tool talks to, and where that
// choice came from (for the error that says what to set).
type toolTarget struct {
	urls   []string
	source string
	// creds, user, password and nkeySeed come from a nats context; the
	// KEFU_NATS_* credentials, when set, win over them.
	creds, user, password, nkeySeed string
}

// resolveToolTarget picks the NATS of a command-line tool, first found:
// KEFU_NATS_URL; NATS_URL (the nats CLI's variable); the nats CLI's
// selected context ($NATS_CONTEXT, else the name in
// $XDG_CONFIG_HOME/nats/context.txt or ~/.config/nats/context.txt, read
// from …/nats/context/<name>.json); else nats://KEFU_NATS_LISTEN, where
// `kefu all` and `kefu demo` listen by default (127.0.0.1:4222). A tool
// never starts a server of its own.
func resolveToolTarget(cfg config.Config, getenv func(string) string) (toolTarget, error) {
	if len(cfg.NATSURLs) > 0 {
		return toolTarget{urls: cfg.NATSURLs, source: "KEFU_NATS_URL"}, nil
	}
	if v := strings.TrimSpace(getenv("NATS_URL")); v != "" {
		return toolTarget{urls: splitURLs(v), source: "NATS_URL"}, nil
	}
	t, ok, err := natsContext(getenv)
	if err != nil || ok {
		return t, err
	}
	return toolTarget{urls: []string{"nats://" + cfg.NATSListen}, source: "KEFU_NATS_LISTEN, as neither KEFU_NATS_URL, NATS_URL nor a nats context is set"}, nil
}

func splitURLs(v string) []string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// natsContextFile is the part of a nats CLI context that kefu uses
// (github.com/nats-io/jsm.go/natscontext); settings kefu cannot honour are
// refused rather than ignored, so a tool never connects as someone else.
type natsContextFile struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Token    string `json:"token"`
	NSC      string `json:"nsc"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
	UserJWT  string `json:"user_jwt"`
	Socks    string `json:"socks_proxy"`
}

// natsConfigDir is the nats CLI's configuration directory.
func natsConfigDir(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "nats")
	}
	return ""
}

// natsContext reads the nats CLI's selected context; ok is false when none
// is selected.
func natsContext(getenv func(string) string) (t toolTarget, ok bool, err error) {
	dir := natsConfigDir(getenv)
	name := strings.TrimSpace(getenv("NATS_CONTEXT"))
	if name == "" && dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "context.txt"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return t, false, nil
			}
			return t, false, fmt.Errorf("nats context: %w", err)
		}
		name = strings.TrimSpace(string(b))
	}
	if name == "" {
		return t, false, nil
	}
	if dir == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") || len(name) > 255 {
		return t, false, fmt.Errorf("nats context %q: not a context name; set KEFU_NATS_URL instead", name)
	}
	path := filepath.Join(dir, "context", name+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		return t, false, fmt.Errorf("nats context %q: %w; set KEFU_NATS_URL instead", name, err)
	}
	var c natsContextFile
	if err := json.Unmarshal(b, &c); err != nil {
		return t, false, fmt.Errorf("nats context %q: %s: %v", name, path, err)
	}
	for field, v := range map[string]string{"token": c.Token, "nsc": c.NSC, "cert": c.Cert, "key": c.Key, "ca": c.CA, "user_jwt": c.UserJWT, "socks_proxy": c.Socks} {
		if v != "" {
			return t, false, fmt.Errorf("nats context %q uses %s, which kefu does not support (url, user/password, creds, nkey): set KEFU_NATS_URL and KEFU_NATS_* instead", name, field)
		}
	}
	t = toolTarget{urls: splitURLs(c.URL), source: "nats context " + name, creds: expandHome(c.Creds, getenv), user: c.User, password: c.Password}
	if len(t.urls) == 0 {
		t.urls = []string{"nats://127.0.0.1:4222"} // the nats CLI's default
	}
	if c.NKey != "" {
		seed, err := os.ReadFile(expandHome(c.NKey, getenv))
		if err != nil {
			return t, false, fmt.Errorf("nats context %q: nkey: %w", name, err)
		}
		t.nkeySeed = strings.TrimSpace(string(seed))
	}
	return t, true, nil
}

func expandHome(p string, getenv func(string) string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(getenv("HOME"), rest)
	}
	return p
}

// openCLIBus connects a command-line tool to the NATS resolveToolTarget
// picks; it never starts an embedded server nor creates KEFU_DATA_DIR. When
// nothing answers within toolConnectTimeout it fails with one line saying
// what to set.
func openCLIBus(ctx context.Context, cfg config.Config) (*bus.Bus, error) {
	return openToolBus(ctx, cfg, "kefu-cli", os.Getenv, nil)
}

// openToolBus is openCLIBus with the environment read through getenv (for
// NATS_URL and the nats context), the connection named name in NATS's
// connection lists, and the bus logging to log (nil: nowhere).

func openToolBus(ctx context.Context, cfg config.Config, name string, getenv func(string) string, log *zap.Logger) (*bus.Bus, error) {
	t, err := resolveToolTarget(cfg, getenv)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	bc := busConfig(cfg, name, log, nil)
	bc.URLs, bc.Listen, bc.DataDir = t.urls, "", ""
	if bc.CredsFile == "" && bc.User == "" && bc.Password == "" && bc.NKeySeed == "" {
		bc.CredsFile, bc.User, bc.Password, bc.NKeySeed = t.creds, t.user, t.password, t.nkeySeed
	}
	ctx, cancel := context.WithTimeout(ctx, toolConnectTimeout)
	defer cancel()
	b, err := bus.Open(ctx, bc)
	if err != nil {
		return nil, fmt.Errorf("cannot reach NATS at %s (%s) within %s: %v; set KEFU_NATS_URL to kefu's NATS (a running `kefu demo` prints it)",
			redactURLs(t.urls), t.source, toolConnectTimeout, err)
	}
	return b, nil
}

// redactURLs shows URLs without their passwords.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			s = u.Redacted()
		}
		out[i] = s
	}
	return strings.Join(out, ",")
}
