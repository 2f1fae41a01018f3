package kfadmin_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/kfadmin"
)

// cliEnv is an environment for ResolveRemote with XDG_CONFIG_HOME in a
// fresh directory; file, when not "", is written as the config file with
// mode perm.
func cliEnv(t *testing.T, vars map[string]string, file string, perm os.FileMode) (getenv func(string) string, path string) {
	t.Helper()
	dir := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": dir, "HOME": t.TempDir()}
	for k, v := range vars {
		env[k] = v
	}
	path = filepath.Join(dir, "kefu", "cli.json")
	if file != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, perm); err != nil {
			t.Fatal(err)
		}
	}
	return func(k string) string { return env[k] }, path
}

func TestResolveRemotePrecedence(t *testing.T) {
	const file = `{"server": "https://file.example.com", "token": "file-token"}`
	tests := []struct {
		name        string
		flag        string
		flagGiven   bool
		env         map[string]string
		file        string
		remote      bool
		server      string
		token       string
		serverFromF bool // ServerFrom is the file's path
	}{
		{"nothing set: direct mode", "", false, nil, "", false, "", "", false},
		{"the file alone", "", false, nil, file, true, "https://file.example.com", "file-token", true},
		{"KEFU_SERVER over the file", "", false, map[string]string{"KEFU_SERVER": "https://env.example.com"}, file, true, "https://env.example.com", "file-token", false},
		{"--server over KEFU_SERVER and the file", "https://flag.example.com", true, map[string]string{"KEFU_SERVER": "https://env.example.com"}, file, true, "https://flag.example.com", "file-token", false},
		{"KEFU_ADMIN_TOKEN over the file's token", "", false, map[string]string{"KEFU_ADMIN_TOKEN": "env-token"}, file, true, "https://file.example.com", "env-token", true},
		{"a file with only a token does not make remote mode", "", false, map[string]string{"KEFU_ADMIN_TOKEN": "env-token"}, `{"token":"t"}`, false, "", "", false},
		{"a token file written with echo keeps no newline", "", false, nil, "{\"server\": \"https://file.example.com\", \"token\": \"file-token\\n\"}", true, "https://file.example.com", "file-token", true},
		{"flag and environment need no file", "http://127.0.0.1:8080", true, map[string]string{"KEFU_ADMIN_TOKEN": "env-token"}, "", true, "http://127.0.0.1:8080", "env-token", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv, path := cliEnv(t, tt.env, tt.file, 0o600)
			cfg, remote, err := kfadmin.ResolveRemote(tt.flag, tt.flagGiven, getenv)
			if err != nil || remote != tt.remote || cfg.Server != tt.server || cfg.Token != tt.token {
				t.Fatalf("got %+v remote %v err %v; want server %q token %q remote %v", cfg, remote, err, tt.server, tt.token, tt.remote)
			}
			if remote && (cfg.ServerFrom == path) != tt.serverFromF {
				t.Errorf("ServerFrom %q", cfg.ServerFrom)
			}
			if remote && cfg.Timeout != kfadmin.DefaultServerTimeout {
				t.Errorf("timeout %s", cfg.Timeout)
			}
		})
	}
}

func TestResolveRemoteRefusals(t *testing.T) {
	tests := []struct {
		name, flag string
		flagGiven  bool
		env        map[string]string
		file       string
		perm       os.FileMode
		usage      bool
		want       string
	}{
		{"a token in a file others can read", "", false, nil, `{"server":"https://k.example.com","token":"t"}`, 0o644, false, "readable by others (mode 0644): chmod 600 "},
		{"a token in a file the group can read", "", false, nil, `{"server":"https://k.example.com","token":"t"}`, 0o640, false, "chmod 600 "},
		{"an unknown key in the file", "", false, nil, `{"server":"https://k.example.com","tokn":"t"}`, 0o600, false, `unknown field "tokn"`},
		{"no token anywhere", "https://k.example.com", true, nil, "", 0, false, "needs the server's admin token: set KEFU_ADMIN_TOKEN, or \"token\" in "},
		{"ftp", "ftp://k.example.com", true, nil, "", 0, true, "want an http:// or https:// URL"},
		{"no scheme", "k.example.com:8080", true, nil, "", 0, true, "want an http:// or https:// URL"},
		{"empty --server", "", true, nil, "", 0, true, "want an http:// or https:// URL"},
		{"no host", "https://", true, nil, "", 0, true, "no host"},
		{"a password in the URL", "https://admin:pw@k.example.com", true, nil, "", 0, true, "a user or password in the URL is not accepted"},
		{"a query", "https://k.example.com/?token=x", true, nil, "", 0, true, "a query or fragment"},
		{"too long", "https://k.example.com/" + strings.Repeat("a", 2100), true, nil, "", 0, true, "longer than 2048 characters"},
		{"a bad KEFU_SERVER names it", "", false, map[string]string{"KEFU_SERVER": "kefu.example.com"}, "", 0, true, "(from KEFU_SERVER)"},
		{"a bad server in the file names the file", "", false, map[string]string{"KEFU_ADMIN_TOKEN": "t"}, `{"server":"kefu"}`, 0o600, true, "cli.json)"},
		{"a token with control characters", "https://k.example.com", true, map[string]string{"KEFU_ADMIN_TOKEN": "to\x1bken"}, "", 0, false, "the admin token holds control characters"},
		{"a bad timeout", "https://k.example.com", true, map[string]string{"KEFU_ADMIN_TOKEN": "t", "KEFU_SERVER_TIMEOUT": "15"}, "", 0, true, "KEFU_SERVER_TIMEOUT \"15\": want a duration"},
		{"a negative timeout", "https://k.example.com", true, map[string]string{"KEFU_ADMIN_TOKEN": "t", "KEFU_SERVER_TIMEOUT": "-1s"}, "", 0, true, "KEFU_SERVER_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv, path := cliEnv(t, tt.env, tt.file, tt.perm)
			_, remote, err := kfadmin.ResolveRemote(tt.flag, tt.flagGiven, getenv)
			if err == nil || remote || !strings.Contains(err.Error(), tt.want) || errors.Is(err, kfadmin.ErrUsage) != tt.usage || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v (remote %v); want one line with %q, usage %v", err, remote, tt.want, tt.usage)
			}
			if strings.Contains(tt.want, "chmod 600") && !strings.HasSuffix(err.Error(), "chmod 600 "+path) {
				t.Errorf("%v: want it to end in chmod 600 %s", err, path)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("the error repeats a password: %v", err)
			}
		})
	}
}

func TestResolveRemoteTimeoutAndConfigPath(t *testing.T) {
	getenv, _ := cliEnv(t, map[string]string{"KEFU_ADMIN_TOKEN": "t", "KEFU_SERVER_TIMEOUT": "40s"}, "", 0)
	cfg, _, err := kfadmin.ResolveRemote("https://k.example.com", true, getenv)
	if err != nil || cfg.Timeout != 40*time.Second {
		t.Errorf("KEFU_SERVER_TIMEOUT=40s: %s %v", cfg.Timeout, err)
	}
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/h"}, "/x/kefu/cli.json"},
		{map[string]string{"HOME": "/h"}, "/h/.config/kefu/cli.json"},
		{map[string]string{}, ""},
	} {
		if got := kfadmin.CLIConfigPath(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("%v: %q; want %q", tt.env, got, tt.want)
		}
	}
}

func TestSplitServerFlag(t *testing.T) {
	tests := []struct {
		args   []string
		server string
		given  bool
		rest   string
	}{
		{[]string{"--server", "https://k", "online"}, "https://k", true, "online"},
		{[]string{"--server=https://k", "online"}, "https://k", true, "online"},
		{[]string{"-server", "https://k", "group", "list"}, "https://k", true, "group list"},
		{[]string{"--json", "--server", "https://k", "online"}, "https://k", true, "--json online"},
		{[]string{"online", "--json"}, "", false, "online --json"},
		// After the command words --server is the command's business (a
		// usage mistake there), never taken from a --text value.
		{[]string{"session", "close", "--text", "--server", "x"}, "", false, "session close --text --server x"},
		{[]string{"--", "--server", "x"}, "", false, "-- --server x"},
	}
	for _, tt := range tests {
		server, given, rest, err := kfadmin.SplitServerFlag(tt.args)
		if err != nil || server != tt.server || given != tt.given || strings.Join(rest, " ") != tt.rest {
			t.Errorf("%q: %q %v %q %v", tt.args, server, given, rest, err)
		}
	}
	if _, _, _, err := kfadmin.SplitServerFlag([]string{"online", "x"}[:0:0]); err != nil {
		t.Errorf("no arguments: %v", err)
	}
	if _, _, _, err := kfadmin.SplitServerFlag([]string{"--server"}); !errors.Is(err, kfadmin.ErrUsage) {
		t.Errorf("--server without a URL: %v", err)
	}
}

func TestCleartextWarning(t *testing.T) {
	for server, warn := range map[string]bool{
		"http://kefu.example.com":  true,
		"http://10.0.0.5:8080":     true,
		"https://kefu.example.com": false,
		"http://127.0.0.1:8080":    false,
		"http://localhost:8080":    false,
		"http://[::1]:8080":        false,
	} {
		got := kfadmin.RemoteConfig{Server: server}.CleartextWarning()
		if (got != "") != warn || (warn && !strings.Contains(got, "the admin token travels in clear")) {
			t.Errorf("%s: %q", server, got)
		}
	}
}
