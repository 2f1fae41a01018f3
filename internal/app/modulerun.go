package app

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/config"
)

// startedModules are the modules of a role that started, in start order.
type startedModules struct {
	log  *zap.Logger
	list []module
}

// stop stops the modules in reverse order: each drains its consumers and
// releases its leases within ctx.
func (s *startedModules) stop(ctx context.Context) {
	for i := len(s.list) - 1; i >= 0; i-- {
		if err := s.list[i].Stop(ctx); err != nil {
			s.log.Error("stop module", zap.Error(err))
		}
	}
}

// startModules builds and starts the role's modules in the table's order,
// adding each to started. A lenient role goes on without a module whose
// settings are missing; any other failure ends the start-up (the caller
// stops what started).
func (rt *runtime) startModules(ctx context.Context, started *startedModules) error {
	order, err := modules.order(rt.role.modules)
	if err != nil {
		return err
	}
	for _, name := range order {
		var m module
		if modules[name].hidden {
			users := rt.runnableDependents(order, name)
			if len(users) == 0 {
				continue
			}
			if m, err = modules[name].build(ctx, rt); err != nil {
				// Said as before the module was shared: the first module
				// that needed it could not be built.
				return fmt.Errorf("%s: %w", users[0], err)
			}
		} else {
			if skipModule(rt.cfg, name) {
				rt.log.Info("optional integration not configured", zap.String("module", name))
				continue
			}
			m, err = buildModule(ctx, rt, name)
			if err != nil {
				var missing *config.MissingError
				if rt.role.lenient && errors.As(err, &missing) {
					rt.log.Warn("integration disabled: setting missing", zap.String("module", name), zap.String("missing", missing.Var))
					continue
				}
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		if err := m.Start(ctx); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		if rc, ok := m.(readyChecker); ok {
			rt.checks = append(rt.checks, rc)
		}
		if wm, ok := m.(warner); ok {
			rt.warners = append(rt.warners, wm)
		}
		started.list = append(started.list, m)
	}
	return nil
}

// runnableDependents are the role's modules that need the hidden module
// name and will be built: not skipped, their settings there.
func (rt *runtime) runnableDependents(order []string, name string) []string {
	var out []string
	for _, m := range modules.dependents(order, name) {
		d := modules[m]
		if d.hidden || skipModule(rt.cfg, m) || (d.hasNeed && rt.cfg.Check(rt.role.name, d.need) != nil) {
			continue
		}
		out = append(out, m)
	}
	return out
}
