package kfadmin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command checks its arguments before it uses a backend, so Run
// with empty Deps tells a valid command line (ErrNotConfigured) from a
// mistake (ErrUsage) without calling WeChat or NATS: `kefu kf` relies on it
// to answer mistakes before it connects. A new command needs an example
// here.
func TestEveryCommandChecksItsArgumentsBeforeItsBackends(t *testing.T) {
	avatar := filepath.Join(t.TempDir(), "a.jpg")
	if err := os.WriteFile(avatar, []byte("\xff\xd8\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := map[string][]string{
		"account list":   nil,
		"account add":    {"a@wx", "--nickname", "n"},
		"account update": {"a@wx", "--nickname", "n"},
		"account delete": {"a@wx"},
		"account invite": {"a@wx", "wxid_1"},
		"account avatar": {"a@wx", avatar},
		"online":         nil,
		"waiting":        nil,
		"session get":    {"o-1"},
		"session list":   {"--kf", "a@wx"},
		"session create": {"--openid", "o-1", "--group", "g"},
		"session close":  {"--openid", "o-1", "--kf", "a@wx"},
		"group list":     nil,
		"group create":   {"g"},
		"group add":      {"g", "a@wx"},
		"group remove":   {"g", "a@wx"},
		"group keywords": {"g", "--keywords", "k"},
		"group delete":   {"g"},
	}
	for _, c := range commandTable {
		rest, ok := valid[c.path]
		if !ok {
			t.Errorf("kf %s has no example here", c.path)
			continue
		}
		args := append(strings.Fields(c.path), rest...)
		var stdout bytes.Buffer
		err := Run(context.Background(), args, &stdout, &bytes.Buffer{}, Deps{})
		if !errors.Is(err, ErrNotConfigured) || errors.Is(err, ErrUsage) || stdout.Len() != 0 {
			t.Errorf("kf %s without backends: %v, stdout %q; want ErrNotConfigured and nothing printed", strings.Join(args, " "), err, stdout.String())
		}
	}
}
