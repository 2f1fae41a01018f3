package app

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/deadletter"
)

// runDLQ is `kefu dlq list|show|redrive`. The command line is checked
// before the bus is opened, so a mistake exits 2 without touching NATS.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := deadletter.Parse(args, stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case errors.Is(err, deadletter.ErrUsage):
		return usageError{err.Error()}
	case err != nil:
		return err
	}
	return withCLIBus(ctx, func(b *bus.Bus) error { return deadletter.Run(ctx, o, b, stdout, stderr) })
}
