package kfadmin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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

// extractJSONFlag removes --json (also -json, --json=true|false) from
// anywhere before a "--".
func extractJSONFlag(args []string) ([]string, bool, error) {
	out := make([]string, 0, len(args))
	on := false
	for i, a := range args {
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "json" {
			out = append(out, a)
			continue
		}
		switch {
		case !hasVal || val == "true":
			on = true
		case val == "false":
			on = false
		default:
			return nil, false, &usageError{msg: fmt.Sprintf("invalid value %q for --json", val)}
		}
	}
	return out, on, nil
}

// findCommand matches the leading words of args against the table.
func findCommand(args []string) (*command, []string, error) {
	var best *command
	for _, c := range commandTable {
		words := strings.Fields(c.path)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			best = c
			break
		}
	}
	if best != nil {
		return best, args[len(strings.Fields(best.path)):], nil
	}
	var subs []string
	for _, c := range commandTable {
		if group, sub, ok := strings.Cut(c.path, " "); ok && group == args[0] {
			subs = append(subs, sub)
		}
	}
	if len(subs) == 0 {
		return nil, nil, &usageError{msg: fmt.Sprintf("unknown kf command %q", args[0])}
	}
	synopsis := "kefu kf " + args[0] + " (" + strings.Join(subs, " | ") + ") …"
	if len(args) == 1 {
		return nil, nil, &usageError{msg: "kf " + args[0] + ": missing subcommand", synopsis: synopsis}
	}
	if isHelp(args[1]) {
		return nil, nil, flag.ErrHelp
	}
	return nil, nil, &usageError{msg: fmt.Sprintf("kf %s: unknown subcommand %q", args[0], args[1]), synopsis: synopsis}
}

func (c *command) flagSet(values *map[string]*string) *flag.FlagSet {
	fs := flag.NewFlagSet("kefu kf "+c.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	*values = make(map[string]*string, len(c.flags))
	for _, name := range c.flags {
		(*values)[name] = fs.String(name, "", flagUsage[name])
	}
	return fs
}

// parse reads flags and positional arguments in any order (flag stops at
// the first positional argument, so parsing resumes after each one); after
// "--" everything is positional.
func (inv *invocation) parse(args []string) error {
	var values map[string]*string
	fs := inv.cmd.flagSet(&values)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return inv.usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	inv.args = positional
	inv.flags = make(map[string]string)
	fs.Visit(func(f *flag.Flag) { inv.flags[f.Name] = *values[f.Name] })

	c := inv.cmd
	switch {
	case len(positional) < c.minArgs:
		return inv.usagef("missing argument")
	case c.maxArgs >= 0 && len(positional) > c.maxArgs:
		return inv.usagef("unexpected argument %q", positional[c.maxArgs])
	}
	for _, name := range c.required {
		if !inv.has(name) {
			return inv.usagef("--%s is required", name)
		}
	}
	return nil
}

// emit prints v as JSON, or as the human form.
func (inv *invocation) emit(v any, human func(w io.Writer) error) error {
	if inv.json {
		enc := json.NewEncoder(inv.out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	return human(inv.out)
}

func runAccountList(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.accounts(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeAccounts(w, list) })
}

func runAccountSave(ctx context.Context, inv *invocation) error {
	in := wechat.KfAccountInput{KfAccount: inv.args[0], Nickname: inv.flag("nickname"), Password: inv.flag("password")}
	if strings.TrimSpace(in.Nickname) == "" {
		return inv.usagef("--nickname must not be empty")
	}
	if err := ValidateAccount(in.KfAccount); err != nil {
		return inv.usagef("%v", err)
	}
	out, err := inv.admin.saveAccount(ctx, inv.cmd.path == "account update", in)
	return inv.outcome(out, err)
}

func runAccountDelete(ctx context.Context, inv *invocation) error {
	if err := ValidateAccount(inv.args[0]); err != nil {
		return inv.usagef("%v", err)
	}
	out, err := inv.admin.deleteAccount(ctx, inv.args[0])
	return inv.outcome(out, err)
}

func runAccountInvite(ctx context.Context, inv *invocation) error {
	account, wx := inv.args[0], inv.args[1]
	if err := ValidateAccount(account); err != nil {
		return inv.usagef("%v", err)
	}
	if err := ValidateWeChatID(wx); err != nil {
		return inv.usagef("%v", err)
	}
	out, err := inv.admin.inviteWorker(ctx, account, wx)
	return inv.outcome(out, err)
}

func runAccountAvatar(ctx context.Context, inv *invocation) error {
	account, file := inv.args[0], inv.args[1]
	if err := ValidateAccount(account); err != nil {
		return inv.usagef("%v", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("upload avatar of %s: %w", account, err)
	}
	defer f.Close()
	out, err := inv.admin.uploadAvatar(ctx, account, filepath.Base(file), f)
	return inv.outcome(out, err)
}

func runOnline(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.online(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeOnline(w, list) })
}

func runWaiting(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.waiting(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeWaiting(w, list, inv.now()) })
}

func runSessionGet(ctx context.Context, inv *invocation) error {
	s, err := inv.admin.session(ctx, inv.args[0])
	if err != nil {
		return err
	}
	return inv.emit(s, func(w io.Writer) error { return writeSession(w, s, inv.now()) })
}

func runSessionList(ctx context.Context, inv *invocation) error {
	if err := ValidateAccount(inv.flag("kf")); err != nil {
		return inv.usagef("--kf: %v", err)
	}
	list, err := inv.admin.sessions(ctx, inv.flag("kf"))
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeSessions(w, list, inv.now()) })
}

func runSessionCreate(ctx context.Context, inv *invocation) error {
	req := SessionRequest{OpenID: inv.flag("openid"), KfAccount: inv.flag("kf"), Group: inv.flag("group"), Text: inv.flag("text")}
	switch {
	case strings.TrimSpace(req.OpenID) == "":
		return inv.usagef("--openid must not be empty")
	case inv.has("kf") == inv.has("group"):
		return inv.usagef("give exactly one of --kf and --group")
	case inv.has("kf"):
		if err := ValidateAccount(req.KfAccount); err != nil {
			return inv.usagef("--kf: %v", err)
		}
	default:
		if err := ValidateGroupName(req.Group); err != nil {
			return inv.usagef("--group: %v", err)
		}
	}
	out, err := inv.admin.createSession(ctx, req)
	return inv.outcome(out, err)
}

func runSessionClose(ctx context.Context, inv *invocation) error {
	if strings.TrimSpace(inv.flag("openid")) == "" {
		return inv.usagef("--openid must not be empty")
	}
	if err := ValidateAccount(inv.flag("kf")); err != nil {
		return inv.usagef("--kf: %v", err)
	}
	out, err := inv.admin.closeSession(ctx, inv.flag("openid"), inv.flag("kf"), inv.flag("text"))
	return inv.outcome(out, err)
}

func runGroupList(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.listGroups(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error {
		if err := writeGroups(w, list.Groups); err != nil {
			return err
		}
		return writeMemberStatus(w, list.MemberStatus)
	})
}

// groupArgs checks the group name and accounts of a group command, so that
// a typo is a usage error rather than a failure.
func (inv *invocation) groupArgs() (string, []string, error) {
	name := inv.args[0]
	if err := ValidateGroupName(name); err != nil {
		return "", nil, inv.usagef("%v", err)
	}
	accounts := inv.args[1:]
	for _, a := range accounts {
		if err := ValidateAccount(a); err != nil {
			return "", nil, inv.usagef("%v", err)
		}
	}
	return name, accounts, nil
}

func runGroupCreate(ctx context.Context, inv *invocation) error {
	name, _, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.createGroup(ctx, name, SplitKeywords(inv.flag("keywords")), nil)
	return inv.group("created", grp, err)
}

func runGroupAdd(ctx context.Context, inv *invocation) error {
	name, accounts, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.addMembers(ctx, name, accounts)
	return inv.group("updated", grp, err)
}

func runGroupRemove(ctx context.Context, inv *invocation) error {
	name, accounts, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.removeMembers(ctx, name, accounts)
	return inv.group("updated", grp, err)
}

func runGroupKeywords(ctx context.Context, inv *invocation) error {
	name, _, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.setKeywords(ctx, name, SplitKeywords(inv.flag("keywords")))
	return inv.group("updated", grp, err)
}

func runGroupDelete(ctx context.Context, inv *invocation) error {
	name, _, err := inv.groupArgs()
	if err != nil {
		return err
	}
	out, err := inv.admin.deleteGroup(ctx, name)
	return inv.outcome(out, err)
}

func (inv *invocation) outcome(out Outcome, err error) error {
	if err != nil {
		return err
	}
	return inv.emit(out, func(w io.Writer) error { return writeOutcome(w, out) })
}

func (inv *invocation) group(verb string, grp Group, err error) error {
	if err != nil {
		return err
	}
	return inv.emit(grp, func(w io.Writer) error {
		fmt.Fprintf(w, "group %s %s\n", grp.Name, verb)
		return writeGroups(w, []Group{grp})
	})
}

// SplitKeywords splits a keyword list on ',' and the full-width '，' that a
// Chinese keyboard types; empty entries are dropped.
func SplitKeywords(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '，' })
}
