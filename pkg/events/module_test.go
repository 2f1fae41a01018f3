package events_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/pkg/events"
)

// The package is a module of its own so that other teams can import it
// without kefu's dependencies or Go version: its go.mod names no other
// module and the lowest Go version it builds with. The build itself proves
// the first (an import of another module would not compile without a
// require); this test keeps the file honest about it.
func TestModuleNeedsOnlyTheStandardLibrary(t *testing.T) {
	data, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod := string(data)
	if !strings.Contains(mod, "module github.com/kefu-io/kefu/pkg/events\n") {
		t.Errorf("go.mod does not declare module github.com/kefu-io/kefu/pkg/events:\n%s", mod)
	}
	for _, directive := range []string{"require", "replace", "toolchain"} {
		if regexp.MustCompile(`(?m)^` + directive + `\b`).MatchString(mod) {
			t.Errorf("go.mod has a %s directive; the event contract must need nothing but the standard library and its go line", directive)
		}
	}
	// Raising this is a breaking change for importers on older Go:
	// docs/compatibility.md says how it is made.
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(mod); m == nil || m[1] != "1.21" {
		t.Errorf("go.mod's go line is %q, want 1.21 (the lowest version pkg/events builds with)", m)
	}
}

func TestContractVersionIsTheAsyncAPIVersion(t *testing.T) {
	info := object(t, loadAsyncAPI(t).root, "info")
	if v, _ := info["version"].(string); v != events.ContractVersion {
		t.Errorf("docs/asyncapi.json info.version %q, events.ContractVersion %q: the module is tagged with the contract's version, so they must agree", v, events.ContractVersion)
	}
}
