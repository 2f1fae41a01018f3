package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// wechatClient returns the process's WeChat API client, built once: every
// module of a role shares one client, one rate limiter and one access
// token, kept in the kefu_token bucket so replicas share it too.
func (rt *runtime) wechatClient(ctx context.Context) (*wechat.Client, error) {
	if rt.wechat != nil {
		return rt.wechat, nil
	}
	if err := rt.cfg.Check(rt.role.name, config.NeedWeChatAPI); err != nil {
		return nil, err
	}
	c, err := newWeChatClient(ctx, rt.cfg, rt.bus, wechat.NewMetrics(rt.registry))
	if err != nil {
		return nil, err
	}
	rt.wechat = c
	return c, nil
}

// newWeChatClient builds a client whose token is shared through b (or
// kept in memory when b is nil).
func newWeChatClient(ctx context.Context, cfg config.Config, b *bus.Bus, metrics *wechat.Metrics) (*wechat.Client, error) {
	fetcher := &wechat.StableTokenFetcher{BaseURL: cfg.WeChatAPIBase, AppID: cfg.WeChatAppID, Secret: cfg.WeChatSecret.Value(), Metrics: metrics}
	seal, err := wechat.TokenSealKey(cfg.WeChatSecret.Value())
	if err != nil {
		return nil, err
	}
	// Sealed in kefu_token: reading the bucket is not enough to call WeChat.
	opts := wechat.TokenOptions{AppID: cfg.WeChatAppID, SealKey: seal}
	var tokens wechat.TokenSource
	if b != nil {
		kv, err := b.KeyValue(ctx, bus.BucketToken)
		if err != nil {
			return nil, err
		}
		if tokens, err = wechat.NewKVTokenSource(kv, fetcher, opts); err != nil {
			return nil, err
		}
	} else {
		mem, err := wechat.NewMemoryTokenSource(fetcher, opts)
		if err != nil {
			return nil, err
		}
		tokens = mem
	}
	// Every module of the role shares this client: keep enough idle
	// connections for the notifier's concurrent sends. Its limiter is a
	// safety cap only; the notifier's own (KEFU_NOTIFY_RATE_LIMIT) paces
	// customer messages before it claims one, so nothing waits while claimed.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	c, err := wechat.NewClient(wechat.ClientConfig{
		BaseURL: cfg.WeChatAPIBase, AppID: cfg.WeChatAppID, Secret: cfg.WeChatSecret.Value(),
		HTTPClient: &http.Client{Timeout: wechat.DefaultHTTPTimeout, Transport: transport},
		Tokens:     tokens, RateLimit: 500, Metrics: metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("wechat client: %w", err)
	}
	return c, nil
}

// kfAdminDeps is what the kf admin operations work with (the admin API,
// the console's actions, the router): the WeChat client and the
// kefu_groups bucket.
func (rt *runtime) kfAdminDeps(ctx context.Context) (kfadmin.Deps, error) {
	client, err := rt.wechatClient(ctx)
	if err != nil {
		return kfadmin.Deps{}, err
	}
	kv, err := rt.bus.KeyValue(ctx, bus.BucketGroups)
	if err != nil {
		return kfadmin.Deps{}, err
	}
	return kfadmin.Deps{Client: client, Groups: kfadmin.NewGroups(kv)}, nil
}

// buildRouter returns the keyword router for ingest, or nil when the
// WeChat API is not configured (customers then go to any agent).
func buildRouter(ctx context.Context, rt *runtime) (*kfadmin.Router, error) {
	deps, err := rt.kfAdminDeps(ctx)
	if err != nil {
		return nil, err
	}
	rcfg := kfadmin.RouterConfig{Groups: deps.Groups, Agents: deps.Client, Logger: rt.log.Named("router")}
	if len(rt.cfg.ChooseKeywords) > 0 {
		// The customers' choice of agent: menus wait in kefu_kf_choice,
		// and every answered number is an AgentChosen on KEFU_KF.
		store, err := rt.bus.KeyValue(ctx, bus.BucketChoice)
		if err != nil {
			return nil, err
		}
		if err := rt.bus.EnsureStreams(ctx, events.StreamKF); err != nil {
			return nil, err
		}
		rcfg.Choice = kfadmin.ChoiceConfig{Keywords: rt.cfg.ChooseKeywords, Store: store, Publisher: rt.bus, AppID: rt.cfg.WeChatAppID}
	}
	return kfadmin.NewRouter(rcfg)
}

// buildAdmin mounts the admin HTTP API when KEFU_ADMIN_TOKEN or
// KEFU_API_TOKEN is set (the read-only token may only GET).
func buildAdmin(ctx context.Context, rt *runtime) (module, error) {
	tokens := rt.apiTokens()
	if !tokens.Configured() {
		rt.log.Info("admin HTTP API off: neither KEFU_ADMIN_TOKEN nor KEFU_API_TOKEN is set")
		return noopModule{}, nil
	}
	deps, err := rt.kfAdminDeps(ctx)
	if err != nil {
		return nil, err
	}
	h := kfadmin.NewHTTPHandler(tokens, deps, rt.log.Named("admin"))
	rt.mux.Handle("/api/kf/", h)
	return noopModule{}, nil
}
