package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Every command answers the same way (a table-driven test holds each one
// to it, so a new command cannot drift):
//
//   - help asked for (help, -h, -help, --help) goes to stdout, exit 0;
//   - a usage mistake is one line on stderr, exit 2:
//     kefu: <what is wrong> (run `kefu <command> --help`)
//   - a failure at run time is one line on stderr, exit 1: kefu: <error>.

// isHelpArg reports whether a asks for help.
func isHelpArg(a string) bool { return a == "help" || a == "-h" || a == "--help" || a == "-help" }

// trailingHint matches a hint a command already put at the end of its
// message ("; run `kefu kf help`", " (see kefu dlq --help)"); usageLine
// puts the one hint every command uses in its place.
var trailingHint = regexp.MustCompile("(;|,)? *\\(?(see|run) `?kefu [a-z -]*`?\\)?$")

// usageLine is the message of a usage mistake in args, with the help to
// read.
func usageLine(msg string, args []string) string {
	msg = strings.TrimSpace(trailingHint.ReplaceAllString(msg, ""))
	return msg + " (run " + helpHint(args) + ")"
}

// runVersion is `kefu version`.
func runVersion(_ context.Context, args []string, out, _ io.Writer) error {
	switch {
	case len(args) == 1 && isHelpArg(args[0]):
		fmt.Fprint(out, "Usage: kefu version\n\nPrints kefu's version, commit, build date and Go version (also the metric kefu_build_info).\n")
		return nil
	case len(args) > 0:
		return usageError{fmt.Sprintf("version takes no arguments, got %q", args[0])}
	}
	fmt.Fprintln(out, buildInfo())
	return nil
}

// runHelp is `kefu help [command]`: the overview, or a command's own help.
func runHelp(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || (len(args) == 1 && isHelpArg(args[0])) {
		usage(out)
		return nil
	}
	if len(args) > 1 {
		return usageError{fmt.Sprintf("help takes one command name, got %d arguments", len(args))}
	}
	name := args[0]
	if _, ok := findRole(name); ok {
		return run(ctx, []string{name, "--help"}, out, errOut)
	}
	for _, c := range commands() {
		if c.name == name && c.name != "help" {
			return run(ctx, []string{name, "--help"}, out, errOut)
		}
	}
	return usageError{fmt.Sprintf("help: unknown command %q", name)}
}

// roleUsage is the help of a role: what it runs, then its flags, each
// the override of a KEFU_* variable.
func roleUsage(w io.Writer, name string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: kefu %s [flags]\n", name)
	if name == "ingest" {
		fmt.Fprint(w, "       kefu ingest --tucao-backfill --from YYYY-MM-DD --to YYYY-MM-DD [flags]\n"+
			"         publish the Tucao posts created on those days, both included; days are\n"+
			"         Tucao's, in Asia/Shanghai (UTC+8), whatever this host's time zone\n")
	}
	if r, ok := findRole(name); ok {
		fmt.Fprintf(w, "\n%s\n", r.summary)
	}
	fmt.Fprint(w, "\nFlags (each overrides the environment variable named at its end; `kefu help` lists them all):\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
}
