package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// kfMain runs `kefu args…` through the command entry point.
func kfMain(args ...string) (code int, stdout, stderr string) {
	var out, errw bytes.Buffer
	code = Main(args, &out, &errw)
	return code, out.String(), errw.String()
}

// `kefu kf --server` against a running `kefu all`: the commands go
// through its admin API with KEFU_ADMIN_TOKEN, from an environment with no
// NATS and no WeChat settings (those it has point nowhere, so a command
// that used them would fail).
func TestKfThroughTheAdminAPIOfARunningKefu(t *testing.T) {
	const token = "e2e-admin-token-0123456789"
	r := startAll(t, map[string]string{"KEFU_ADMIN_TOKEN": token})
	if err := r.fake.AddAgent("alice@test", "Alice"); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.SetAgentStatus("alice@test", wechattest.StatusPC); err != nil {
		t.Fatal(err)
	}

	// The tool's own environment: no NATS, no WeChat, an empty config dir.
	toolEnv(t, closedAddr(t))
	t.Setenv("KEFU_NATS_URL", "nats://"+closedAddr(t))

	t.Setenv("KEFU_ADMIN_TOKEN", token)
	code, out, errw := kfMain("kf", "--server", r.base, "online")
	if code != 0 || !strings.Contains(out, "alice@test") || !strings.HasPrefix(out, "ACCOUNT") || errw != "" {
		t.Fatalf("kf --server URL online: exit %d\nstdout %s\nstderr %s", code, out, errw)
	}
	if code, out, errw := kfMain("kf", "--server="+r.base, "group", "create", "sales", "--keywords", "买"); code != 0 || !strings.HasPrefix(out, "group sales created\n") {
		t.Fatalf("kf --server=URL group create: exit %d\nstdout %s\nstderr %s", code, out, errw)
	}
	if code, out, errw := kfMain("kf", "--json", "--server", r.base, "group", "add", "sales", "alice@test"); code != 0 || !strings.Contains(out, `"alice@test"`) {
		t.Fatalf("kf --json --server URL group add: exit %d\nstdout %s\nstderr %s", code, out, errw)
	}

	// KEFU_SERVER instead of the flag.
	t.Setenv("KEFU_SERVER", r.base)
	code, out, errw = kfMain("kf", "group", "list", "--json")
	var list struct {
		Groups []struct {
			Name    string   `json:"name"`
			Members []string `json:"members"`
		} `json:"groups"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Groups) != 1 || list.Groups[0].Members[0] != "alice@test" {
		t.Fatalf("KEFU_SERVER group list --json: exit %d\nstdout %s\nstderr %s", code, out, errw)
	}

	// A WeChat refusal comes back with its errcode, exit 1.
	code, _, errw = kfMain("kf", "account", "add", "alice@test", "--nickname", "A")
	if code != 1 || !strings.Contains(errw, "errcode 65406") || strings.Count(errw, "\n") != 1 {
		t.Errorf("a refusal: exit %d, stderr %q", code, errw)
	}

	// A wrong token: one line, exit 1.
	t.Setenv("KEFU_ADMIN_TOKEN", "not-the-token")
	code, out, errw = kfMain("kf", "online")
	if code != 1 || out != "" || errw != "kefu: the server refused the admin token: set KEFU_ADMIN_TOKEN to the server's admin token\n" {
		t.Errorf("a wrong token: exit %d, stdout %q, stderr %q", code, out, errw)
	}

	// Only the config file: server and token from it, chmod 600.
	t.Setenv("KEFU_SERVER", "")
	t.Setenv("KEFU_ADMIN_TOKEN", "")
	cfgDir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgDir)
	file := filepath.Join(cfgDir, "kefu", "cli.json")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"server": r.base, "token": token})
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errw := kfMain("kf", "waiting"); code != 0 || out != "no customer is waiting\n" {
		t.Errorf("with the config file: exit %d\nstdout %s\nstderr %s", code, out, errw)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errw = kfMain("kf", "waiting")
	if code != 1 || !strings.HasSuffix(errw, "chmod 600 "+file+"\n") || strings.Count(errw, "\n") != 1 {
		t.Errorf("a config file others can read: exit %d, stderr %q", code, errw)
	}

	// The flag wins over the file: a bad URL in the flag is a usage
	// mistake (exit 2), whatever the file says.
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errw := kfMain("kf", "--server", "ftp://"+strings.TrimPrefix(r.base, "http://"), "online"); code != 2 || !strings.Contains(errw, "want an http:// or https:// URL") {
		t.Errorf("--server ftp://: exit %d, stderr %q", code, errw)
	}
}

// Help and mistakes never dial the server in remote mode either; a
// command that gets as far as calling does, which proves the port would
// have seen the others.
func TestKfServerHelpAndMistakesNeverDial(t *testing.T) {
	toolEnv(t, closedAddr(t))
	port := countAccepts(t)
	url := "http://" + port.ln.Addr().String()
	t.Setenv("KEFU_ADMIN_TOKEN", "some-token")
	t.Setenv("KEFU_SERVER_TIMEOUT", "200ms")
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"kf", "--server", url, "help"}, 0},
		{[]string{"kf", "--server", url, "--help"}, 0},
		{[]string{"kf", "--server", url, "group", "-h"}, 0},
		{[]string{"kf", "--server", url, "session", "create", "-h"}, 0},
		{[]string{"kf", "--server", url, "frobnicate"}, 2},
		{[]string{"kf", "--server", url, "account", "add", "a@test"}, 2},
		{[]string{"kf", "--server", url, "online", "--server", url}, 2},
		{[]string{"kf", "--server"}, 2},
		{[]string{"kf", "--server", "ftp://x", "online"}, 2},
	} {
		code, out, errw := kfMain(tt.args...)
		if code != tt.code || (code == 2) != (strings.Count(errw, "\n") == 1 && out == "") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d", tt.args, code, out, errw, tt.code)
		}
	}
	if code, _, errw := kfMain("kf", "--server", url, "help"); code != 0 || errw != "" {
		t.Errorf("help wrote to stderr: %q", errw)
	}
	if n := port.n.Load(); n != 0 {
		t.Fatalf("help and mistakes made %d connections", n)
	}
	code, _, errw := kfMain("kf", "--server", url, "online")
	if code != 1 || !strings.Contains(errw, "no answer from kefu at "+url+" within 200ms") || strings.Count(errw, "\n") != 1 {
		t.Errorf("a server that never answers: exit %d, stderr %q", code, errw)
	}
	if port.n.Load() == 0 {
		t.Error("the command did not reach the port: the counts above prove nothing")
	}
}

// Plain http to another host warns, in one line, that the token travels
// in clear; the command still runs.
func TestKfServerWarnsOfPlainHTTP(t *testing.T) {
	toolEnv(t, closedAddr(t))
	t.Setenv("KEFU_ADMIN_TOKEN", "some-token")
	t.Setenv("KEFU_SERVER_TIMEOUT", "200ms")
	// 192.0.2.0/24 is TEST-NET-1: never routed, the call fails at once or
	// within the timeout.
	code, _, errw := kfMain("kf", "--server", "http://192.0.2.1:8080", "online")
	lines := strings.Split(strings.TrimSpace(errw), "\n")
	if code != 1 || len(lines) != 2 || lines[0] != "kefu: warning: http://192.0.2.1:8080 is plain http: the admin token travels in clear; use https" {
		t.Errorf("exit %d, stderr %q", code, errw)
	}
}
