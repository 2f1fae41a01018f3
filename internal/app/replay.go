package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/replay"
)

// runReplay is `kefu replay`: it reads a stream with an ephemeral ordered
// consumer, never touching the services' durable consumers.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runReplayCommand(ctx, args, stdout, stderr, replay.CheckReplay, replay.Replay)
}

// runEvents is `kefu events tail`.
func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		replay.Usage(stdout)
		return nil
	}
	if len(args) == 0 {
		return usageError{"events needs a subcommand: tail"}
	}
	if args[0] != "tail" {
		return usageError{fmt.Sprintf("events: unknown subcommand %q; the subcommand is tail", args[0])}
	}
	return runReplayCommand(ctx, args[1:], stdout, stderr, replay.CheckTail, replay.Tail)
}

// runReplayCommand runs a command of the replay package on the CLI's bus,
// once check has accepted its command line: help and mistakes never
// connect.
func runReplayCommand(ctx context.Context, args []string, stdout, stderr io.Writer,
	check func([]string) error, cmd func(context.Context, []string, io.Writer, io.Writer, *bus.Bus) error) error {
	for i, a := range args {
		if a == "-h" || a == "--help" || a == "-help" || (i == 0 && a == "help") {
			replay.Usage(stdout)
			return nil
		}
	}
	err := check(args)
	if err == nil {
		err = withCLIBus(ctx, func(b *bus.Bus) error { return cmd(ctx, args, stdout, stderr, b) })
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		replay.Usage(stdout)
		return nil
	case errors.Is(err, replay.ErrUsage):
		return usageError{err.Error()}
	}
	return err
}
