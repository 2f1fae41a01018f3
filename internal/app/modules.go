package app

import (
	"context"
	"fmt"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// moduleNeeds are the settings without which a module cannot run.
var moduleNeeds = map[string]config.Need{
	"ingest": config.NeedCallback,
}

// buildModule constructs one module of a role and registers its routes.
func buildModule(ctx context.Context, rt *runtime, name string) (module, error) {
	if need, ok := moduleNeeds[name]; ok {
		if err := rt.cfg.Check(rt.role.name, need); err != nil {
			return nil, err
		}
	}
	switch name {
	case "ingest":
		return buildIngest(ctx, rt)
	}
	return nil, fmt.Errorf("unknown module %q", name)
}

// noopModule is a module whose work is all in its HTTP handlers.
type noopModule struct{}

func (noopModule) Start(context.Context) error { return nil }
func (noopModule) Stop(context.Context) error  { return nil }

func buildIngest(ctx context.Context, rt *runtime) (module, error) {
	if err := rt.bus.EnsureStreams(ctx, events.StreamWeChat); err != nil {
		return nil, err
	}
	svc, err := ingest.New(ingest.Config{
		AppID:    rt.cfg.WeChatAppID,
		Token:    rt.cfg.WeChatToken.Value(),
		AESKey:   rt.cfg.WeChatAESKey.Value(),
		Transfer: rt.cfg.WeChatTransfer,
	}, ingest.Deps{Publisher: rt.bus, Logger: rt.log.Named("ingest"), Registerer: rt.registry})
	if err != nil {
		return nil, err
	}
	svc.Routes(rt.mux)
	return noopModule{}, nil
}
