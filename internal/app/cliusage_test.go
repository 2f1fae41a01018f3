package app

import (
	"bytes"
	"strings"
	"testing"
)

// every command line names each role and command once, so that a command
// added to the tables is held to the same rules without editing this test.
func everyCommand() []string {
	var names []string
	for _, r := range roles {
		names = append(names, r.name)
	}
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

// Subcommands answer like the commands they belong to.
var subcommandLines = [][]string{
	{"kf", "account", "list"},
	{"kf", "session", "get"},
	{"dlq", "list"},
	{"dlq", "redrive"},
	{"events", "tail"},
	{"ingest", "--tucao-backfill"},
}

// isolateFromNATS points the tools at a port where nothing listens: help
// and usage mistakes must never need it.
func isolateFromNATS(t *testing.T) {
	t.Helper()
	t.Setenv("KEFU_NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("NATS_URL", "")
	t.Setenv("NATS_CONTEXT", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("KEFU_DATA_DIR", t.TempDir())
}

func TestEveryCommandPrintsHelpOnStdoutAndExitsZero(t *testing.T) {
	isolateFromNATS(t)
	var lines [][]string
	for _, name := range everyCommand() {
		lines = append(lines, []string{name})
	}
	lines = append(lines, []string{}) // `kefu --help`
	commandLines := len(lines)
	lines = append(lines, subcommandLines...)
	for i, line := range lines {
		helps := []string{"--help", "-h", "-help", "help"}
		if i >= commandLines {
			// After a subcommand, a word is an argument (an openid may
			// be "help"): only the flags ask for help there.
			helps = helps[:3]
		}
		for _, h := range helps {
			args := append(append([]string{}, line...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := mainContext(t.Context(), args, &stdout, &stderr)
				if code != 0 {
					t.Fatalf("exit %d, want 0 (stderr %q)", code, stderr.String())
				}
				if stdout.Len() == 0 {
					t.Fatal("no help on stdout")
				}
				if stderr.Len() != 0 {
					t.Fatalf("help wrote to stderr: %q", stderr.String())
				}
			})
		}
	}
}

func TestEveryUsageMistakeIsOneLineOnStderrWithExitTwo(t *testing.T) {
	isolateFromNATS(t)
	var lines [][]string
	for _, name := range everyCommand() {
		lines = append(lines, []string{name, "--no-such-flag"})
	}
	for _, sub := range subcommandLines {
		lines = append(lines, append(append([]string{}, sub...), "--no-such-flag"))
	}
	lines = append(lines,
		[]string{},                 // no command
		[]string{"launch"},         // unknown command
		[]string{"help", "launch"}, // help of an unknown command
		[]string{"version", "extra"},
		[]string{"kf"},
		[]string{"kf", "launch"},
		[]string{"dlq"},
		[]string{"dlq", "list"}, // --role missing
		[]string{"events"},
		[]string{"events", "watch"},
		[]string{"replay"}, // --stream missing
		[]string{"replay", "--stream", "KEFU_WECHAT", "--since", "yesterday"},
		[]string{"ingest", "--tucao-backfill", "--from", "2026-12-01"},
		[]string{"ingest", "--tucao-backfill", "--from", "2026-12-01", "--to", "2026-13-01"},
		[]string{"ingest", "extra"},
	)
	for _, args := range lines {
		t.Run(strings.Join(append([]string{"kefu"}, args...), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := mainContext(t.Context(), args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("a mistake wrote to stdout: %q", stdout.String())
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
				t.Fatalf("want exactly one line on stderr, got %q", msg)
			}
			if !strings.HasPrefix(msg, "kefu: ") {
				t.Errorf("%q does not start with \"kefu: \"", msg)
			}
			if _, ok := findRole(firstOr(args)); ok && strings.Contains(msg, "flag provided") && !strings.HasPrefix(msg, "kefu: "+args[0]+": ") {
				t.Errorf("%q does not name the command it is about", msg)
			}
			hint := "(run `kefu help`)"
			if len(args) > 0 && args[0] != "help" && args[0] != "version" {
				if _, ok := findRole(args[0]); ok || isCommand(args[0]) {
					hint = "(run `kefu " + args[0] + " --help`)"
				}
			}
			if !strings.HasSuffix(msg, " "+hint+"\n") {
				t.Errorf("%q does not end with %s", msg, hint)
			}
			if strings.Count(msg, "kefu ") > 1+strings.Count(hint, "kefu ") || strings.Count(msg, "help") > strings.Count(hint, "help")+strings.Count(strings.Join(args, " "), "help") {
				t.Errorf("%q points to the help more than once", msg)
			}
		})
	}
}

func isCommand(name string) bool {
	for _, c := range commands() {
		if c.name == name {
			return true
		}
	}
	return false
}

func TestHelpOfACommandIsThatCommandsHelp(t *testing.T) {
	isolateFromNATS(t)
	for _, name := range []string{"replay", "dlq", "kf", "ingest", "version"} {
		t.Run(name, func(t *testing.T) {
			var viaHelp, direct bytes.Buffer
			if code := mainContext(t.Context(), []string{"help", name}, &viaHelp, &bytes.Buffer{}); code != 0 {
				t.Fatalf("kefu help %s: exit %d", name, code)
			}
			if code := mainContext(t.Context(), []string{name, "--help"}, &direct, &bytes.Buffer{}); code != 0 {
				t.Fatalf("kefu %s --help: exit %d", name, code)
			}
			if viaHelp.String() != direct.String() {
				t.Fatalf("kefu help %s differs from kefu %s --help", name, name)
			}
		})
	}
}

func TestRoleHelpSaysWhatTheRoleRunsAndHowToBackfill(t *testing.T) {
	isolateFromNATS(t)
	var out bytes.Buffer
	if code := mainContext(t.Context(), []string{"ingest", "--help"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"Usage: kefu ingest [flags]\n",
		"kefu ingest --tucao-backfill --from YYYY-MM-DD --to YYYY-MM-DD",
		"Asia/Shanghai (UTC+8)",
		"-http-addr",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("kefu ingest --help does not say %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "YYYYMMDD") {
		t.Error("the help still documents the deprecated YYYYMMDD form")
	}
}

func firstOr(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}
