package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/kfadmin"
)

// runKf is `kefu kf …`: the 多客服 admin commands. The command line is
// checked first by running it against no backends (every command checks
// its arguments before it calls WeChat or NATS), so help and usage
// mistakes never connect anywhere. Then the tool connects to NATS
// (openCLIBus: the groups live in kefu_groups, and the WeChat access token
// is the one the services share in kefu_token) and runs it for real; the
// WeChat API needs KEFU_WECHAT_APPID and KEFU_WECHAT_SECRET.
//
// With a server (--server URL, KEFU_SERVER or the config file, see
// kfadmin.ResolveRemote) the commands go through that kefu's admin API
// instead, with KEFU_ADMIN_TOKEN: no NATS, no WeChat credentials.
func runKf(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"kf needs a subcommand"}
	}
	server, serverGiven, args, err := kfadmin.SplitServerFlag(args)
	if err != nil {
		return usageError{err.Error()}
	}
	dry := kfadmin.Run(ctx, args, stdout, stderr, kfadmin.Deps{})
	switch {
	case errors.Is(dry, kfadmin.ErrUsage):
		return usageError{dry.Error()}
	case !errors.Is(dry, kfadmin.ErrNotConfigured):
		// nil: the help was printed; otherwise a failure before any
		// backend (say, an avatar file that cannot be read).
		return dry
	}
	remote, isRemote, err := kfadmin.ResolveRemote(server, serverGiven, os.Getenv)
	switch {
	case errors.Is(err, kfadmin.ErrUsage):
		return usageError{err.Error()}
	case err != nil:
		return err
	case isRemote:
		return runKfRemote(ctx, remote, args, stdout, stderr)
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	missingWeChat := cfg.Check("kf", config.NeedWeChatAPI)
	if errors.Is(dry, kfadmin.ErrWeChatNotConfigured) && missingWeChat != nil {
		return missingWeChat
	}
	b, err := openCLIBus(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	kv, err := b.KeyValue(ctx, bus.BucketGroups)
	if err != nil {
		return err
	}
	deps := kfadmin.Deps{Groups: kfadmin.NewGroups(kv)}
	if missingWeChat == nil {
		if deps.Client, err = newWeChatClient(ctx, cfg, b, nil); err != nil {
			return err
		}
	}
	err = kfadmin.Run(ctx, args, stdout, stderr, deps)
	switch {
	case errors.Is(err, kfadmin.ErrUsage):
		return usageError{err.Error()}
	case errors.Is(err, kfadmin.ErrWeChatNotConfigured) && missingWeChat != nil:
		return missingWeChat
	}
	return err
}

// runKfRemote runs the command through the admin API of the kefu at
// remote.Server.
func runKfRemote(ctx context.Context, remote kfadmin.RemoteConfig, args []string, stdout, stderr io.Writer) error {
	client, err := kfadmin.NewRemote(remote)
	if err != nil {
		return err
	}
	if w := remote.CleartextWarning(); w != "" {
		fmt.Fprintln(stderr, "kefu:", w)
	}
	err = kfadmin.Run(ctx, args, stdout, stderr, kfadmin.Deps{Remote: client})
	if errors.Is(err, kfadmin.ErrUsage) {
		return usageError{err.Error()}
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
