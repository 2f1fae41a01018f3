package kfadmin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

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
