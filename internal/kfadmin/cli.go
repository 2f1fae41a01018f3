package kfadmin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

// ErrUsage marks a mistake on the command line: unknown subcommand, missing
// or extra arguments, a bad or missing flag. The app exits 2 for it and 1
// for every other error.
var ErrUsage = errors.New("usage error")

// usageError is a one-line ErrUsage with the command's synopsis.
type usageError struct {
	msg      string
	synopsis string
}

func (e *usageError) Error() string {
	if e.synopsis == "" {
		return e.msg
	}
	return e.msg + "; usage: " + e.synopsis
}

func (e *usageError) Unwrap() error { return ErrUsage }

// command is one leaf of `kefu kf`. The table below is the CLI's contract.
type command struct {
	path    string // words after "kf", e.g. "account add"
	args    string // synopsis of what follows the path
	summary string
	// minArgs and maxArgs bound the positional arguments; maxArgs < 0 means
	// no upper bound.
	minArgs, maxArgs int
	flags            []string // accepted flags (see flagUsage)
	required         []string // flags that must be given
	run              func(ctx context.Context, inv *invocation) error
}

func (c *command) synopsis() string {
	s := "kefu kf " + c.path
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

var flagUsage = map[string]string{
	"nickname": "agent nickname shown to customers (at most 16 characters)",
	"password": "agent password in clear; it is sent as its MD5",
	"kf":       "kf account, prefix@wechat-id",
	"openid":   "customer openid",
	"group":    "local agent group: the least-loaded online member is chosen",
	"text":     "note shown to the agent in the 多客服 client",
	"keywords": "comma-separated routing keywords (',' or '，')",
}

var commandTable = []*command{
	{path: "account list", summary: "list kf accounts", run: runAccountList},
	{path: "account add", args: "ACCOUNT --nickname N [--password P]", summary: "add a kf account",
		minArgs: 1, maxArgs: 1, flags: []string{"nickname", "password"}, required: []string{"nickname"}, run: runAccountSave},
	{path: "account update", args: "ACCOUNT --nickname N [--password P]", summary: "change a kf account's nickname (and password)",
		minArgs: 1, maxArgs: 1, flags: []string{"nickname", "password"}, required: []string{"nickname"}, run: runAccountSave},
	{path: "account delete", args: "ACCOUNT", summary: "delete a kf account",
		minArgs: 1, maxArgs: 1, run: runAccountDelete},
	{path: "account invite", args: "ACCOUNT WECHAT_ID", summary: "invite a WeChat user to bind the account (they accept in WeChat; see account list)",
		minArgs: 2, maxArgs: 2, run: runAccountInvite},
	{path: "account avatar", args: "ACCOUNT FILE", summary: "upload a kf account's avatar (640×640 JPEG recommended)",
		minArgs: 2, maxArgs: 2, run: runAccountAvatar},
	{path: "online", summary: "list online agents and their load", run: runOnline},
	{path: "waiting", summary: "show the customers waiting in the 多客服 queue", run: runWaiting},
	{path: "session get", args: "OPENID", summary: "show who serves a customer",
		minArgs: 1, maxArgs: 1, run: runSessionGet},
	{path: "session list", args: "--kf ACCOUNT", summary: "list the sessions an agent serves",
		flags: []string{"kf"}, required: []string{"kf"}, run: runSessionList},
	{path: "session create", args: "--openid O (--kf ACCOUNT | --group G) [--text T]",
		summary: "assign a customer to an agent, or to the least-loaded online member of a group",
		flags:   []string{"openid", "kf", "group", "text"}, required: []string{"openid"}, run: runSessionCreate},
	{path: "session close", args: "--openid O --kf ACCOUNT [--text T]", summary: "close a customer's session",
		flags: []string{"openid", "kf", "text"}, required: []string{"openid", "kf"}, run: runSessionClose},
	{path: "group list", summary: "list local agent groups, with their members' online state and load", run: runGroupList},
	{path: "group create", args: "G [--keywords k1,k2]", summary: "create a group (keywords route customers to it)",
		minArgs: 1, maxArgs: 1, flags: []string{"keywords"}, run: runGroupCreate},
	{path: "group add", args: "G ACCOUNT...", summary: "add agents to a group (each must be in `account list`)",
		minArgs: 2, maxArgs: -1, run: runGroupAdd},
	{path: "group remove", args: "G ACCOUNT...", summary: "remove agents from a group",
		minArgs: 2, maxArgs: -1, run: runGroupRemove},
	{path: "group keywords", args: "G --keywords k1,k2", summary: "replace a group's routing keywords (\"\" clears them)",
		minArgs: 1, maxArgs: 1, flags: []string{"keywords"}, required: []string{"keywords"}, run: runGroupKeywords},
	{path: "group delete", args: "G", summary: "delete a group", minArgs: 1, maxArgs: 1, run: runGroupDelete},
}

// Usage writes the help of `kefu kf`.
func Usage(w io.Writer) {
	fmt.Fprint(w, "Usage: kefu kf [--server URL] <command> [--json]\n\n"+
		"Administer WeChat 多客服: agent accounts, sessions and the queue (WeChat API),\n"+
		"and the local agent groups (NATS KV bucket kefu_groups).\n\nCommands:\n")
	for _, c := range commandTable {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimPrefix(c.synopsis(), "kefu "), c.summary)
	}
	fmt.Fprint(w, "\n--json (anywhere) prints exactly one JSON document instead of a table.\n"+
		"\nRemote mode (for people): the commands go through the admin API of a running kefu\n"+
		"(roles all and estimator), so no WeChat AppSecret, whitelisted IP or NATS is needed here.\n"+
		"  server   --server URL (before the command; also --server=URL), else KEFU_SERVER,\n"+
		"           else \"server\" in $XDG_CONFIG_HOME/kefu/cli.json (~/.config/kefu/cli.json)\n"+
		"  token    KEFU_ADMIN_TOKEN, else \"token\" in that file, which must be chmod 600;\n"+
		"           never a flag (it would show in the shell history and in ps)\n"+
		"  timeout  KEFU_SERVER_TIMEOUT per request (default 15s)\n"+
		"Direct mode (on the server host), when no server is set: WeChat with KEFU_WECHAT_APPID\n"+
		"and KEFU_WECHAT_SECRET, the groups and the shared token on kefu's NATS (`kefu help`).\n"+
		"\nExit status: 0 ok, 1 failure (WeChat errors show errcode and errmsg), 2 usage mistake.\n")
}

// invocation is one parsed command line.
type invocation struct {
	cmd   *command
	args  []string
	flags map[string]string // flags given, by name
	json  bool
	out   io.Writer
	admin backend
	now   func() time.Time
}

// backend carries out the commands: admin calls WeChat and the kefu_groups
// bucket directly (on the server host), Remote goes through the admin HTTP
// API of a running kefu (`kefu kf --server URL`). Both return the same
// documents, so the commands print the same either way.
type backend interface {
	accounts(ctx context.Context) (AccountList, error)
	saveAccount(ctx context.Context, update bool, in wechat.KfAccountInput) (Outcome, error)
	deleteAccount(ctx context.Context, account string) (Outcome, error)
	inviteWorker(ctx context.Context, account, wx string) (Outcome, error)
	uploadAvatar(ctx context.Context, account, filename string, img io.Reader) (Outcome, error)
	online(ctx context.Context) (OnlineList, error)
	waiting(ctx context.Context) (WaitingList, error)
	session(ctx context.Context, openid string) (SessionState, error)
	sessions(ctx context.Context, account string) (SessionList, error)
	createSession(ctx context.Context, req SessionRequest) (Outcome, error)
	closeSession(ctx context.Context, openid, account, text string) (Outcome, error)
	listGroups(ctx context.Context) (GroupList, error)
	createGroup(ctx context.Context, name string, keywords, members []string) (Group, error)
	addMembers(ctx context.Context, name string, accounts []string) (Group, error)
	removeMembers(ctx context.Context, name string, accounts []string) (Group, error)
	setKeywords(ctx context.Context, name string, keywords []string) (Group, error)
	deleteGroup(ctx context.Context, name string) (Outcome, error)
}

// backendOf is deps.Remote when set, else the direct backend.
func backendOf(deps Deps) backend {
	if deps.Remote != nil {
		return deps.Remote
	}
	return admin{deps: deps}
}

func (inv *invocation) flag(name string) string { return inv.flags[name] }

func (inv *invocation) has(name string) bool {
	_, ok := inv.flags[name]
	return ok
}

func (inv *invocation) usagef(format string, a ...any) error {
	return &usageError{msg: "kf " + inv.cmd.path + ": " + fmt.Sprintf(format, a...), synopsis: inv.cmd.synopsis()}
}

// Run executes `kefu kf ARGS…`. Output goes to stdout (a table, or one
// JSON document with --json); errors are returned, as one line, for the
// caller to print. Mistakes of usage wrap ErrUsage. `-h` prints help and
// returns nil.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, deps Deps) error {
	args, jsonOut, err := extractJSONFlag(args)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		Usage(stderr)
		return &usageError{msg: "no kf command given"}
	}
	if isHelp(args[0]) {
		Usage(stdout)
		return nil
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			Usage(stdout)
			return nil
		}
		return err
	}
	inv := &invocation{cmd: cmd, json: jsonOut, out: stdout, admin: backendOf(deps), now: deps.now}
	if err := inv.parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: %s\n\n%s\n", cmd.synopsis(), cmd.summary)
			fs := cmd.flagSet(new(map[string]*string))
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return err
	}
	return cmd.run(ctx, inv)
}

func isHelp(a string) bool { return a == "help" || a == "-h" || a == "-help" || a == "--help" }
