package app

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kefu-io/kefu/internal/config"
)

// moduleDef is one module of the table: what it is called, what must run
// before it, the settings it cannot run without and how it is built.
//
// A role names only its user-visible modules; the table adds what they
// depend on and orders the whole, so that no module works only because
// another happened to be listed before it (docs/architecture.md).
type moduleDef struct {
	name string
	// deps are built and started before this module, stopped after it,
	// and run whenever it runs.
	deps []string
	// after are modules this one must follow when the role runs them too,
	// without pulling them in: the console reads the feedback module's
	// store in `all`, and opens its own in the console role.
	after []string
	// hidden modules are shared things no role names (the WeChat client,
	// the customer read model, the feedback links): built once, when the
	// first module that depends on them is about to be built.
	hidden bool
	// need are the settings without which the module cannot run (when
	// hasNeed); an optional module with none of them set is skipped.
	need     config.Need
	hasNeed  bool
	optional bool
	build    func(context.Context, *runtime) (module, error)
}

// moduleDefs is the module table.
var moduleDefs = []moduleDef{
	{name: "wechat", hidden: true, build: buildShared(func(ctx context.Context, rt *runtime) error {
		_, err := rt.wechatClient(ctx)
		return err
	})},
	{name: "customers", hidden: true, build: buildShared(func(ctx context.Context, rt *runtime) error {
		_, err := rt.customerStates(ctx)
		return err
	})},
	{name: "links", hidden: true, build: buildShared(func(_ context.Context, rt *runtime) error {
		_, err := rt.feedbackLinks()
		return err
	})},
	// ingest's WeChat client (the IP allow-list) and customer read model
	// (keyword routing) depend on settings: it asks for them itself.
	{name: "ingest", need: config.NeedCallback, hasNeed: true, build: buildIngest},
	{name: "tucao", need: config.NeedTucao, hasNeed: true, optional: true, build: buildTucao},
	{name: "estimator", deps: []string{"wechat", "customers"}, need: config.NeedWeChatAPI, hasNeed: true, build: buildEstimator},
	{name: "notifier", deps: []string{"wechat", "customers", "links"}, need: config.NeedWeChatAPI, hasNeed: true, build: buildNotifier},
	{name: "queuecare", deps: []string{"wechat", "links"}, need: config.NeedWeChatAPI, hasNeed: true, build: buildQueuecare},
	{name: "feedback", build: buildFeedback},
	{name: "admin", need: config.NeedWeChatAPI, hasNeed: true, optional: true, build: buildAdmin},
	{name: "console", after: []string{"feedback"}, build: buildConsole},
}

// buildShared makes a hidden module's build: the shared thing is kept in
// the runtime, and the module has nothing to start or stop.
func buildShared(open func(context.Context, *runtime) error) func(context.Context, *runtime) (module, error) {
	return func(ctx context.Context, rt *runtime) (module, error) {
		if err := open(ctx, rt); err != nil {
			return nil, err
		}
		return noopModule{}, nil
	}
}

// moduleTable indexes module definitions by name.
type moduleTable map[string]moduleDef

func newModuleTable(defs []moduleDef) moduleTable {
	t := make(moduleTable, len(defs))
	for _, d := range defs {
		t[d.name] = d
	}
	return t
}

var modules = newModuleTable(moduleDefs)

// moduleNeeds are the settings without which a module cannot run.
var moduleNeeds = func() map[string]config.Need {
	out := map[string]config.Need{}
	for _, d := range moduleDefs {
		if d.hasNeed {
			out[d.name] = d.need
		}
	}
	return out
}()

// skipModule reports whether an optional module is entirely unconfigured.
func skipModule(cfg config.Config, name string) bool {
	d, ok := modules[name]
	return ok && d.optional && d.hasNeed && cfg.NoneSet(d.need)
}

// buildModule constructs one module of a role and registers its routes.
func buildModule(ctx context.Context, rt *runtime, name string) (module, error) {
	d, ok := modules[name]
	if !ok {
		return nil, fmt.Errorf("unknown module %q", name)
	}
	if d.hasNeed {
		if err := rt.cfg.Check(rt.role.name, d.need); err != nil {
			return nil, err
		}
	}
	return d.build(ctx, rt)
}

// order returns names and everything they depend on, each module after
// its dependencies (and after the modules of its after list that are
// there too), otherwise in the order given: the same list gives the same
// order. An unknown name or a cycle is an error.
func (t moduleTable) order(names []string) ([]string, error) {
	in := map[string]bool{}
	var collect func(name, from string) error
	collect = func(name, from string) error {
		d, ok := t[name]
		if !ok {
			if from == "" {
				return fmt.Errorf("unknown module %q", name)
			}
			return fmt.Errorf("module %s depends on unknown module %q", from, name)
		}
		if in[name] {
			return nil
		}
		in[name] = true
		for _, dep := range d.deps {
			if err := collect(dep, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := collect(n, ""); err != nil {
			return nil, err
		}
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var out, path []string
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			i := slices.Index(path, name)
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(path[i:], name), " → "))
		}
		state[name] = visiting
		path = append(path, name)
		d := t[name]
		for _, dep := range d.deps {
			if err := visit(dep); err != nil {
				return err
			}
		}
		for _, a := range d.after {
			if in[a] {
				if err := visit(a); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		out = append(out, name)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dependents returns the modules of order that depend on name, directly
// or not, in order.
func (t moduleTable) dependents(order []string, name string) []string {
	var out []string
	for _, m := range order {
		if m != name && t.dependsOn(m, name) {
			out = append(out, m)
		}
	}
	return out
}

func (t moduleTable) dependsOn(m, name string) bool {
	for _, d := range t[m].deps {
		if d == name || t.dependsOn(d, name) {
			return true
		}
	}
	return false
}

// GraphModule is one module of a role in ModuleGraph.
type GraphModule struct {
	Name string
	// Hidden modules are shared things the role does not name.
	Hidden bool
	// Deps are the modules started before it.
	Deps []string
}

// GraphRole is a role and its modules in start order (stopped in
// reverse).
type GraphRole struct {
	Name    string
	Modules []GraphModule
}

// ModuleGraph returns every role with its modules, hidden ones included,
// in the order they start, and what each depends on: the picture of
// docs/architecture.md, for a test to keep it true.
func ModuleGraph() ([]GraphRole, error) {
	out := make([]GraphRole, 0, len(roles))
	for _, r := range roles {
		order, err := modules.order(r.modules)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", r.name, err)
		}
		g := GraphRole{Name: r.name}
		for _, m := range order {
			d := modules[m]
			g.Modules = append(g.Modules, GraphModule{Name: m, Hidden: d.hidden, Deps: slices.Clone(d.deps)})
		}
		out = append(out, g)
	}
	return out, nil
}
