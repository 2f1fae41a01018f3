package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/services/console"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// consoleModule owns the feedback store it opened itself (the console
// role alone, with KEFU_FEEDBACK_DSN).
type consoleModule struct {
	*console.Service
	store store.Store
}

func (m consoleModule) Stop(ctx context.Context) error {
	err := m.Service.Stop(ctx)
	if m.store != nil {
		if cerr := m.store.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// buildConsole serves the supervisor console at /console/. It needs a
// token to sign in with; its actions need the WeChat API settings, its
// feedback filter the feedback store (the feedback module's in `all`,
// else KEFU_FEEDBACK_DSN's; without either it searches the posts it read
// from the bus).
func buildConsole(ctx context.Context, rt *runtime) (module, error) {
	if rt.cfg.AdminToken == "" && rt.cfg.APIToken == "" {
		// `all` starts without it, with a warning; `console` refuses to.
		return nil, &config.MissingError{Var: "KEFU_ADMIN_TOKEN", Role: rt.role.name, Why: "the console's sign-in (or KEFU_API_TOKEN for a read-only console)"}
	}
	deps := console.Deps{Bus: rt.bus, Logger: rt.log.Named("console"), Registerer: rt.registry}
	if rt.cfg.AdminToken != "" {
		if err := rt.cfg.Check(rt.role.name, config.NeedWeChatAPI); err == nil {
			admin, err := rt.kfAdminDeps(ctx)
			if err != nil {
				return nil, err
			}
			deps.Actions = kfadmin.NewHTTPHandler(rt.apiTokens(), admin, rt.log.Named("console"))
		} else {
			rt.log.Info("console actions off: they need KEFU_WECHAT_APPID and KEFU_WECHAT_SECRET")
		}
	}
	var own store.Store
	switch {
	case rt.feedbackStore != nil:
		deps.Posts = rt.feedbackStore
	case rt.cfg.FeedbackDSN != "":
		st, err := store.Open(ctx, rt.cfg.FeedbackDSN.Value(), rt.cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("KEFU_FEEDBACK_DSN: %w", err)
		}
		own, deps.Posts = st, st
	}
	svc, err := console.New(console.Config{
		AdminToken: rt.cfg.AdminToken.Value(), ReadOnlyToken: rt.cfg.APIToken.Value(), AppID: rt.cfg.WeChatAppID,
		TrustedProxies: rt.cfg.TrustedProxies, StaleAfter: rt.cfg.StaleAfter,
	}, deps)
	if err != nil {
		if own != nil {
			own.Close()
		}
		return nil, err
	}
	svc.Routes(rt.mux)
	rt.console = svc
	return consoleModule{Service: svc, store: own}, nil
}

// consoleLinkTTL is how long the one-time sign-in links `kefu demo` prints
// stay valid.
const consoleLinkTTL = 30 * time.Minute

// consoleLinks are one-time sign-in links to the console (admin and
// read-only), or an error when the console is off.
func (rt *runtime) consoleLinks() (admin, readOnly string, err error) {
	if rt.console == nil {
		return "", "", errors.New("console off")
	}
	base := rt.httpURL + console.Path + "#code="
	if rt.cfg.AdminToken != "" {
		admin = base + rt.console.SignInCode(true, consoleLinkTTL)
	}
	if rt.cfg.APIToken != "" {
		readOnly = base + rt.console.SignInCode(false, consoleLinkTTL)
	}
	return admin, readOnly, nil
}
