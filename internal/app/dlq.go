package app

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/deadletter"
)

// runDLQ is `kefu dlq list|show|redrive`. The command line is checked
// before the bus is opened, so a mistake exits 2 without touching NATS.
func runDLQ(ctx context.Context, args []string, stdout, _ io.Writer) error {
	o, err := deadletter.Parse(args, stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case errors.Is(err, deadletter.ErrUsage):
		return usageError{err.Error()}
	case err != nil:
		return err
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	b, err := openCLIBus(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	return deadletter.Run(ctx, o, b, stdout)
}
