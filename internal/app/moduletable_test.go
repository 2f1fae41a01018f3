package app

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/config"
)

// recordingModule writes "start name" and "stop name" to a shared log.
type recordingModule struct {
	name string
	log  *[]string
}

func (m recordingModule) Start(context.Context) error {
	*m.log = append(*m.log, "start "+m.name)
	return nil
}

func (m recordingModule) Stop(context.Context) error {
	*m.log = append(*m.log, "stop "+m.name)
	return nil
}

// useModuleTable replaces the module table for one test.
func useModuleTable(t *testing.T, defs []moduleDef) {
	t.Helper()
	saved := modules
	modules = newModuleTable(defs)
	t.Cleanup(func() { modules = saved })
}

func TestModuleOrderOfEveryRoleRespectsDependencies(t *testing.T) {
	for _, r := range roles {
		order, err := modules.order(r.modules)
		if err != nil {
			t.Fatalf("role %s: %v", r.name, err)
		}
		again, _ := modules.order(r.modules)
		if !slices.Equal(order, again) {
			t.Errorf("role %s: order changes between calls: %q then %q", r.name, order, again)
		}
		for _, m := range r.modules {
			if !slices.Contains(order, m) {
				t.Errorf("role %s: module %s missing from %q", r.name, m, order)
			}
		}
		for i, m := range order {
			d := modules[m]
			if d.hidden && slices.Contains(r.modules, m) {
				t.Errorf("role %s names the hidden module %s", r.name, m)
			}
			for _, dep := range d.deps {
				if j := slices.Index(order, dep); j < 0 || j > i {
					t.Errorf("role %s: %s starts before its dependency %s: %q", r.name, m, dep, order)
				}
			}
			for _, a := range d.after {
				if j := slices.Index(order, a); j > i {
					t.Errorf("role %s: %s starts before %s, which it follows: %q", r.name, m, a, order)
				}
			}
		}
	}
}

func TestModuleTableEveryDefinitionIsBuildable(t *testing.T) {
	for _, d := range moduleDefs {
		if d.build == nil {
			t.Errorf("module %s has no build", d.name)
		}
		if _, err := modules.order([]string{d.name}); err != nil {
			t.Errorf("module %s: %v", d.name, err)
		}
		if d.optional && !d.hasNeed {
			t.Errorf("optional module %s names no settings to tell whether it is configured", d.name)
		}
	}
}

func TestModuleOrderReportsUnknownNamesAndCycles(t *testing.T) {
	noop := func(context.Context, *runtime) (module, error) { return noopModule{}, nil }
	table := newModuleTable([]moduleDef{
		{name: "a", deps: []string{"b"}, build: noop},
		{name: "b", deps: []string{"c"}, build: noop},
		{name: "c", deps: []string{"a"}, build: noop},
		{name: "d", deps: []string{"nowhere"}, build: noop},
		{name: "e", after: []string{"f"}, build: noop},
		{name: "f", after: []string{"e"}, build: noop},
	})
	tests := []struct {
		names []string
		want  string
	}{
		{[]string{"a"}, "module dependency cycle: a → b → c → a"},
		{[]string{"d"}, `module d depends on unknown module "nowhere"`},
		{[]string{"zz"}, `unknown module "zz"`},
		{[]string{"e", "f"}, "module dependency cycle: e → f → e"},
	}
	for _, tt := range tests {
		_, err := table.order(tt.names)
		if err == nil || err.Error() != tt.want {
			t.Errorf("order(%q) = %v, want %q", tt.names, err, tt.want)
		}
	}
	// after alone pulls nothing in.
	if order, err := table.order([]string{"e"}); err != nil || !slices.Equal(order, []string{"e"}) {
		t.Errorf("order(e) = %q, %v; want [e]", order, err)
	}
}

func TestModulesStartInOrderStopInReverseHiddenBuiltOnce(t *testing.T) {
	var events []string
	builds := map[string]int{}
	def := func(name string, hidden bool, deps ...string) moduleDef {
		return moduleDef{name: name, hidden: hidden, deps: deps, build: func(context.Context, *runtime) (module, error) {
			builds[name]++
			return recordingModule{name: name, log: &events}, nil
		}}
	}
	skipped := def("tucaoish", false, "shared2")
	skipped.need, skipped.hasNeed, skipped.optional = config.NeedTucao, true, true
	useModuleTable(t, []moduleDef{
		def("shared", true), def("shared2", true), def("base", true, "shared"),
		def("a", false, "base"), def("b", false, "shared", "base"), skipped,
	})
	rt := &runtime{role: role{name: "test", modules: []string{"a", "tucaoish", "b"}}, log: zap.NewNop()}
	started := &startedModules{log: rt.log}
	if err := rt.startModules(context.Background(), started); err != nil {
		t.Fatal(err)
	}
	started.stop(context.Background())
	want := []string{"start shared", "start base", "start a", "start b", "stop b", "stop a", "stop base", "stop shared"}
	if !slices.Equal(events, want) {
		t.Errorf("events:\n got %q\nwant %q", events, want)
	}
	if builds["shared"] != 1 || builds["base"] != 1 {
		t.Errorf("hidden modules built %v, want once each", builds)
	}
	if builds["shared2"] != 0 || builds["tucaoish"] != 0 {
		t.Errorf("a hidden module only a skipped module needs was built: %v", builds)
	}
}

func TestModuleGraphNamesEveryRoleAndTheNotifiersSharedModules(t *testing.T) {
	graph, err := ModuleGraph()
	if err != nil {
		t.Fatal(err)
	}
	if len(graph) != len(roles) {
		t.Fatalf("graph has %d roles, the roles table %d", len(graph), len(roles))
	}
	for _, g := range graph {
		if g.Name != "notifier" {
			continue
		}
		var names []string
		for _, m := range g.Modules {
			names = append(names, m.Name)
			if m.Hidden != modules[m.Name].hidden {
				t.Errorf("module %s: hidden %v in the graph", m.Name, m.Hidden)
			}
		}
		if got := strings.Join(names, " "); got != "wechat customers links notifier queuecare" {
			t.Errorf("notifier role starts %q", got)
		}
	}
}
