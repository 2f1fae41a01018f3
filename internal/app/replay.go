package app

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/replay"
)

// runReplay is `kefu replay`: it reads a stream with an ephemeral ordered
// consumer, never touching the services' durable consumers.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runReplayCommand(ctx, args, stdout, stderr, replay.Replay)
}

// runEvents is `kefu events tail`.
func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "tail" {
		replay.Usage(stderr)
		return usageError{"events: the subcommand is tail (kefu events tail [--subject S] [--stream S] [--json])"}
	}
	return runReplayCommand(ctx, args[1:], stdout, stderr, replay.Tail)
}

// runReplayCommand runs a command of the replay package on the CLI's bus.
func runReplayCommand(ctx context.Context, args []string, stdout, stderr io.Writer,
	cmd func(context.Context, []string, io.Writer, io.Writer, *bus.Bus) error) error {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			replay.Usage(stdout)
			return nil
		}
	}
	err := withCLIBus(ctx, func(b *bus.Bus) error { return cmd(ctx, args, stdout, stderr, b) })
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case errors.Is(err, replay.ErrUsage):
		return usageError{err.Error()}
	}
	return err
}
