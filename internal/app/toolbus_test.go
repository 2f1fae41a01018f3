package app

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/natstest"
)

// toolEnv makes a tool's environment hermetic: no NATS setting, no nats
// context (HOME is an empty directory), KEFU_DATA_DIR unset (its default,
// ./kefu-data, is under the returned working directory, empty at first),
// and KEFU_NATS_LISTEN — the last fallback — at listen.
func toolEnv(t *testing.T, listen string) (cwd string) {
	t.Helper()
	for _, k := range []string{"KEFU_NATS_URL", "NATS_URL", "NATS_CONTEXT", "XDG_CONFIG_HOME", "KEFU_DATA_DIR",
		"KEFU_NATS_USER", "KEFU_NATS_PASSWORD", "KEFU_NATS_CREDS", "KEFU_NATS_NKEY_SEED", "KEFU_WECHAT_APPID", "KEFU_WECHAT_SECRET",
		"KEFU_SERVER", "KEFU_SERVER_TIMEOUT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KEFU_NATS_LISTEN", listen)
	cwd = t.TempDir()
	t.Chdir(cwd)
	return cwd
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s was created in the working directory", e.Name())
	}
}

// acceptCounter is a TCP port that is not NATS: it counts the
// connections it accepts and never says a word on them.
type acceptCounter struct {
	ln net.Listener
	n  atomic.Int32
}

func countAccepts(t *testing.T) *acceptCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &acceptCounter{ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return a
}

func closedAddr(t *testing.T) string { return freeAddr(t) }

// Help and command-line mistakes of every tool are answered before
// anything is dialled or created: the port every tool would reach sees no
// connection, and the working directory stays empty. The last step proves
// that this port does see a tool that gets as far as connecting.
func TestToolHelpAndMistakesNeverConnect(t *testing.T) {
	port := countAccepts(t)
	cwd := toolEnv(t, port.ln.Addr().String())
	help := [][]string{
		{"kf", "help"}, {"kf", "--help"}, {"kf", "-h"}, {"kf", "online", "--help"}, {"kf", "group", "create", "--help"},
		{"kf", "group", "--help"}, {"kf", "session", "create", "-h"},
		{"replay", "--help"}, {"replay", "help"}, {"events", "tail", "help"}, {"dlq", "help"}, {"replay", "--stream", "KEFU_TUCAO", "-h"}, {"events", "--help"}, {"events", "help"}, {"events", "tail", "--help"},
		{"dlq", "--help"}, {"dlq", "list", "--help"},
		{"ingest", "--tucao-backfill", "--help"}, {"ingest", "-h"},
	}
	for _, args := range help {
		var stdout, stderr bytes.Buffer
		if code := Main(args, &stdout, &stderr); code != 0 || stdout.Len() == 0 || stderr.Len() != 0 {
			t.Errorf("kefu %s: exit %d, stdout %d bytes, stderr %q; want 0, the help on stdout, nothing on stderr",
				strings.Join(args, " "), code, stdout.Len(), stderr.String())
		}
	}
	mistakes := [][]string{
		{"kf"}, {"kf", "bogus"}, {"kf", "group", "create"}, {"kf", "online", "--colour"}, {"kf", "session", "create", "--openid", "o"},
		{"kf", "account", "add", "bad account", "--nickname", "n"},
		{"replay"}, {"replay", "--stream", "KEFU_TUCAO", "--bogus"}, {"replay", "--stream", "KEFU_TUCAO", "--since", "yesterday"},
		{"events"}, {"events", "tail", "--subject", "kefu..x"},
		{"dlq", "list"}, {"dlq", "show", "--role", "feedback", "--seq", "0"},
		{"ingest", "--tucao-backfill", "--from", "2026-01-01"}, {"ingest", "--tucao-backfill", "--from", "2026", "--to", "2026-01-02"},
	}
	for _, args := range mistakes {
		var stdout, stderr bytes.Buffer
		code := Main(args, &stdout, &stderr)
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if code != 2 || stdout.Len() != 0 || len(lines) != 1 || !strings.Contains(lines[0], "help") {
			t.Errorf("kefu %s: exit %d, stdout %q, stderr %q; want 2 and one line on stderr pointing to the help",
				strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
	if n := port.n.Load(); n != 0 {
		t.Errorf("help and mistakes made %d connections", n)
	}
	assertEmptyDir(t, cwd)

	// The same port counts a tool that does connect.
	if code := Main([]string{"kf", "group", "list"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 1 {
		t.Errorf("kf group list on a port that is not NATS: exit %d, want 1", code)
	}
	if port.n.Load() == 0 {
		t.Error("the port saw no connection from a tool that connects: the count above proves nothing")
	}
}

// A port that accepts TCP but is not NATS fails the tool with one line
// naming KEFU_NATS_URL, within the connect bound (it used to hang ~11 s).
func TestToolOnAPortThatIsNotNATS(t *testing.T) {
	port := countAccepts(t)
	cwd := toolEnv(t, port.ln.Addr().String())
	var stderr bytes.Buffer
	start := time.Now()
	code := Main([]string{"replay", "--stream", "KEFU_TUCAO"}, &bytes.Buffer{}, &stderr)
	took := time.Since(start)
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "KEFU_NATS_URL") {
		t.Errorf("exit %d, stderr %q; want 1 and one line naming KEFU_NATS_URL", code, stderr.String())
	}
	if took > 3*toolConnectTimeout {
		t.Errorf("took %v, want about %v", took, toolConnectTimeout)
	}
	if port.n.Load() == 0 {
		t.Error("the tool never dialled the port")
	}
	assertEmptyDir(t, cwd)
}

// With no NATS anywhere, every tool fails with one line saying what to set,
// and none creates a data directory or starts a server.
func TestToolsWithoutNATSFailWithOneLine(t *testing.T) {
	cwd := toolEnv(t, closedAddr(t))
	t.Setenv("KEFU_TUCAO_PRODUCT_ID", "1234")
	t.Setenv("KEFU_TUCAO_SECRET", "s")
	t.Setenv("KEFU_TUCAO_API_BASE", "http://"+closedAddr(t)) // never the real Tucao, even if the bus opened
	tools := [][]string{
		{"kf", "group", "create", "g"},
		{"replay", "--stream", "KEFU_TUCAO"},
		{"events", "tail"},
		{"dlq", "list", "--role", "feedback"},
		{"ingest", "--tucao-backfill", "--from", "2026-01-01", "--to", "2026-01-02"},
	}
	type result struct {
		code   int
		stderr string
	}
	results := make([]result, len(tools))
	var wg sync.WaitGroup
	for i, args := range tools {
		wg.Go(func() {
			var stderr bytes.Buffer
			// Bounded: a tool that found some NATS after all (events
			// tail follows forever) fails here instead of hanging.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			results[i] = result{mainContext(ctx, args, &bytes.Buffer{}, &stderr), stderr.String()}
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "set KEFU_NATS_URL") {
			t.Errorf("kefu %s: exit %d, stderr %q; want 1 and one line saying to set KEFU_NATS_URL", strings.Join(tools[i], " "), r.code, r.stderr)
		}
	}
	assertEmptyDir(t, cwd)
}

// groupsOn reports whether the kefu_groups bucket of s holds group g.
func groupsOn(t *testing.T, s *server.Server, g string, opts ...nats.Option) bool {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bus.BucketGroups)
	if err != nil {
		return false
	}
	_, err = kv.Get(ctx, g)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func kfCreate(t *testing.T, group string) {
	t.Helper()
	var stderr bytes.Buffer
	if code := Main([]string{"kf", "group", "create", group}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("kf group create %s: exit %d: %s", group, code, stderr.String())
	}
}

func TestToolsHonourNATS_URL(t *testing.T) {
	s := natstest.Run(t, nil)
	cwd := toolEnv(t, closedAddr(t))
	t.Setenv("NATS_URL", s.ClientURL())
	kfCreate(t, "from-nats-url")
	if !groupsOn(t, s, "from-nats-url") {
		t.Error("the group is not on the server NATS_URL names")
	}
	assertEmptyDir(t, cwd)
}

func writeContext(t *testing.T, dir, name, json string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "nats", "context"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats", "context.txt"), []byte(name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats", "context", name+".json"), []byte(json), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The nats CLI's selected context is honoured: in $XDG_CONFIG_HOME with a
// user and password, in ~/.config with an nkey seed file.
func TestToolsHonourTheNATSContext(t *testing.T) {
	t.Run("XDG_CONFIG_HOME, user and password", func(t *testing.T) {
		opts := natstest.Options(t)
		opts.Users = []*server.User{{Username: "ops", Password: "pw-ctx-91"}}
		s := natstest.Run(t, opts)
		toolEnv(t, closedAddr(t))
		xdg := t.TempDir()
		t.Setenv("XDG_CONFIG_HOME", xdg)
		writeContext(t, xdg, "prod", `{"description":"kefu","url":"`+s.ClientURL()+`","user":"ops","password":"pw-ctx-91"}`)
		kfCreate(t, "from-xdg-context")
		if !groupsOn(t, s, "from-xdg-context", nats.UserInfo("ops", "pw-ctx-91")) {
			t.Error("the group is not on the context's server")
		}
	})
	t.Run("HOME, nkey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		opts := natstest.Options(t)
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		s := natstest.Run(t, opts)
		toolEnv(t, closedAddr(t))
		home := os.Getenv("HOME")
		if err := os.WriteFile(filepath.Join(home, "ops.nk"), seed, 0o600); err != nil {
			t.Fatal(err)
		}
		writeContext(t, filepath.Join(home, ".config"), "nk", `{"url":"`+s.ClientURL()+`","nkey":"~/ops.nk"}`)
		kfCreate(t, "from-home-context")
		if !groupsOn(t, s, "from-home-context", nats.Nkey(pub, kp.Sign)) {
			t.Error("the group is not on the context's server")
		}
	})
}

// Which NATS a tool picks: KEFU_NATS_URL, NATS_URL, the nats context, then
// KEFU_NATS_LISTEN; a context kefu cannot honour is refused.
func TestToolTargetOrder(t *testing.T) {
	xdg := t.TempDir()
	writeContext(t, xdg, "c", `{"url":"nats://ctx:4222","user":"u","password":"p"}`)
	env := map[string]string{"XDG_CONFIG_HOME": xdg, "NATS_URL": "nats://env:4222, nats://env2:4222"}
	getenv := func(k string) string { return env[k] }
	cfg := config.Config{NATSListen: "127.0.0.1:4222"}
	target := func(cfg config.Config) toolTarget {
		t.Helper()
		tt, err := resolveToolTarget(cfg, getenv)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	if got := target(config.Config{NATSURLs: []string{"nats://kefu:4222"}, NATSListen: "127.0.0.1:4222"}); got.urls[0] != "nats://kefu:4222" || got.source != "KEFU_NATS_URL" {
		t.Errorf("KEFU_NATS_URL set: %+v", got)
	}
	if got := target(cfg); len(got.urls) != 2 || got.urls[1] != "nats://env2:4222" || got.source != "NATS_URL" {
		t.Errorf("NATS_URL set: %+v", got)
	}
	delete(env, "NATS_URL")
	if got := target(cfg); got.urls[0] != "nats://ctx:4222" || got.user != "u" || got.password != "p" || got.source != "nats context c" {
		t.Errorf("context selected: %+v", got)
	}
	env["NATS_CONTEXT"] = "missing"
	if _, err := resolveToolTarget(cfg, getenv); err == nil || !strings.Contains(err.Error(), "KEFU_NATS_URL") {
		t.Errorf("NATS_CONTEXT naming no file: %v", err)
	}
	delete(env, "NATS_CONTEXT")
	writeContext(t, xdg, "tok", `{"url":"nats://ctx:4222","token":"secret"}`)
	if _, err := resolveToolTarget(cfg, getenv); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("a context with a token: %v", err)
	}
	delete(env, "XDG_CONFIG_HOME")
	env["HOME"] = t.TempDir()
	if got := target(cfg); got.urls[0] != "nats://127.0.0.1:4222" {
		t.Errorf("nothing set: %+v", got)
	}
}
