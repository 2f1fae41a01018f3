// Package app is the kefu binary: it parses the command line, loads the
// configuration, and starts the roles. The roles table below is the map of
// the whole system: which services each command runs.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kefu-io/kefu/internal/config"
)

// A role is a command that runs services until it is stopped.
type role struct {
	name    string
	summary string
	// modules are the role's user-visible modules; the module table
	// (moduletable.go) adds what they depend on, starts them in its
	// dependency order and stops them in reverse.
	modules []string
	// lenient roles start without the integrations whose settings are
	// missing, with a warning each; strict ones refuse to start.
	lenient bool
}

// roles is the table a newcomer reads to know the system.
var roles = []role{
	{name: "all", summary: "every role in one process (embedded NATS and SQLite when nothing is configured)",
		modules: []string{"ingest", "tucao", "estimator", "notifier", "queuecare", "feedback", "admin", "console"}, lenient: true},
	{name: "ingest", summary: "WeChat callbacks and the Tucao poller → JetStream (--tucao-backfill --from YYYY-MM-DD --to YYYY-MM-DD, days in Asia/Shanghai, backfills and exits)",
		modules: []string{"ingest", "tucao"}},
	{name: "estimator", summary: "polls the 多客服 queue, estimates each waiting customer's wait (GET /api/kf/queue); with KEFU_ADMIN_TOKEN also the admin API",
		modules: []string{"estimator", "admin"}},
	{name: "notifier", summary: "tells customers who serves them, of transfers, their wait and the feedback link; takes customers out of the queue on a leave phrase and closes stale sessions",
		modules: []string{"notifier", "queuecare"}},
	{name: "feedback", summary: "stores Tucao posts and closed sessions in SQLite or PostgreSQL (KEFU_FEEDBACK_DSN), serves /api/feedback/posts and /api/feedback/sessions",
		modules: []string{"feedback"}},
	{name: "console", summary: "the supervisor console at /console/ (live queue, agents, estimates, feedback; kf actions with KEFU_ADMIN_TOKEN), read from the bus",
		modules: []string{"console"}},
	{name: "demo", summary: "`all` plus simulated WeChat and Tucao traffic, on free ports, no account needed",
		modules: []string{"ingest", "tucao", "estimator", "notifier", "queuecare", "feedback", "admin", "console"}, lenient: true},
}

// command is a non-role command.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"version", "print the version, commit, build date and Go version", runVersion},
		{"replay", "print or republish events of a stream (`kefu replay --help`)", runReplay},
		{"events", "`kefu events tail`: watch events live", runEvents},
		{"dlq", "dead letters: `kefu dlq list|show|redrive --role R` (`kefu dlq --help`)", runDLQ},
		{"kf", "多客服 admin: accounts, online agents, queue, sessions, groups (`kefu kf help`)", runKf},
		{"doctor", "explain what keeps kefu from working: settings, NATS, PostgreSQL, WeChat, callback URL, Tucao (`kefu doctor --help`)", runDoctor},
		{"healthcheck", "GET a health URL (default /healthz on KEFU_HTTP_ADDR): exit 0 on 2xx, 1 otherwise", runHealthcheck},
		{"help", "show this help, or a command's (`kefu help replay`)", runHelp},
	}
}

func findRole(name string) (role, bool) {
	for _, r := range roles {
		if r.name == name {
			return r, true
		}
	}
	return role{}, false
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return mainContext(ctx, args, stdout, stderr)
}

// mainContext is Main until ctx is done.
func mainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if err := run(ctx, args, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		msg := oneLine(err)
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintln(stderr, "kefu:", usageLine(msg, args))
			return 2
		}
		fmt.Fprintln(stderr, "kefu:", msg)
		return 1
	}
	return 0
}

// helpHint is the help to read after a usage mistake in args.
func helpHint(args []string) string {
	if len(args) > 0 {
		if _, ok := findRole(args[0]); ok {
			return "`kefu " + args[0] + " --help`"
		}
		for _, c := range commands() {
			if c.name == args[0] && c.name != "help" && c.name != "version" {
				return "`kefu " + args[0] + " --help`"
			}
		}
	}
	return "`kefu help`"
}

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "--help", "-help":
		name = "help"
	case "-v", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, rest, stdout, stderr)
		}
	}
	if r, ok := findRole(name); ok {
		if len(rest) > 0 && rest[0] == "help" {
			rest = []string{"--help"}
		}
		return runRole(ctx, r, rest, stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown command %q", name)}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "kefu %s — WeChat 多客服 and Tucao feedback on NATS JetStream\n\nUsage: kefu <command> [flags]\n\nRoles (run until SIGTERM):\n", version())
	for _, r := range roles {
		fmt.Fprintf(w, "  %-12s %s\n", r.name, r.summary)
	}
	fmt.Fprintf(w, "\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\n`kefu kf --server URL` (or KEFU_SERVER) goes through a running kefu's admin API with KEFU_ADMIN_TOKEN\n"+
		"and needs no NATS, AppSecret or whitelisted IP (`kefu kf help`); `kefu demo` prints the line to use.\n"+
		"Otherwise the command-line tools (kf, replay, events, dlq, ingest --tucao-backfill) never start a NATS\n"+
		"server nor create KEFU_DATA_DIR; they connect, within 2 s, to KEFU_NATS_URL, else NATS_URL, else the\n"+
		"nats CLI's current context, else nats://KEFU_NATS_LISTEN (127.0.0.1:4222, where `kefu all` listens).\n"+
		"--help and usage mistakes connect nowhere.\n")
	fmt.Fprintf(w, "\nConfiguration comes from the environment (flags override, e.g. --http-addr :9090):\n")
	config.WriteHelp(w)
}
