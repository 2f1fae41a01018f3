package app

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/kfadmin"
)

// runKf is `kefu kf …`: the 多客服 admin commands. The WeChat API needs
// KEFU_WECHAT_APPID and KEFU_WECHAT_SECRET; the group commands (and the
// shared access token) need NATS: KEFU_NATS_URL, a running embedded server
// on KEFU_NATS_LISTEN, or the embedded server's KEFU_DATA_DIR.
func runKf(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		kfadmin.Usage(stdout)
		if len(args) == 0 {
			return usageError{"kf needs a subcommand"}
		}
		return nil
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	deps := kfadmin.Deps{}
	b, busErr := openCLIBus(ctx, cfg)
	if busErr == nil {
		defer b.Close()
		kv, err := b.KeyValue(ctx, bus.BucketGroups)
		if err != nil {
			return err
		}
		deps.Groups = kfadmin.NewGroups(kv)
	}
	if cfg.Check("kf", config.NeedWeChatAPI) == nil {
		client, err := newWeChatClient(ctx, cfg, b, nil)
		if err != nil {
			return err
		}
		deps.Client = client
	}
	err = kfadmin.Run(ctx, args, stdout, stderr, deps)
	if errors.Is(err, kfadmin.ErrUsage) {
		return usageError{err.Error()}
	}
	if errors.Is(err, kfadmin.ErrNotConfigured) {
		if deps.Client == nil {
			if missing := cfg.Check("kf", config.NeedWeChatAPI); missing != nil {
				return missing
			}
		}
		if busErr != nil {
			return errors.Join(err, busErr)
		}
	}
	return err
}

// withCLIBus runs fn with the bus of a command-line tool, configured from
// the environment, and closes it afterwards.
func withCLIBus(ctx context.Context, fn func(*bus.Bus) error) error {
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	b, err := openCLIBus(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	return fn(b)
}

// openCLIBus reaches the bus for a command-line tool: KEFU_NATS_URL, else
// the embedded server of a running `kefu all` on KEFU_NATS_LISTEN, else
// an embedded server started on KEFU_DATA_DIR for the duration of the command.
func openCLIBus(ctx context.Context, cfg config.Config) (*bus.Bus, error) {
	bc := busConfig(cfg, "kefu-cli", zap.NewNop(), nil)
	if len(bc.URLs) == 0 {
		if conn, err := net.DialTimeout("tcp", cfg.NATSListen, 500*time.Millisecond); err == nil {
			conn.Close()
			bc.URLs = []string{"nats://" + cfg.NATSListen}
		} else {
			bc.Listen = "127.0.0.1:0"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return bus.Open(ctx, bc)
}
