package httpapi_test

import (
	"os"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/httpapi"
)

// Every kind's type URI points at a section of docs/http-api.md: a
// "### <slug>" heading, whose GitHub anchor is the slug.
func TestEveryKindIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/http-api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, k := range httpapi.Kinds() {
		if !strings.Contains(doc, "\n### "+string(k)+"\n") {
			t.Errorf("docs/http-api.md has no section %q for %s", "### "+string(k), k.URI())
		}
		if !strings.HasPrefix(k.URI(), httpapi.TypeBase) || !strings.HasSuffix(httpapi.TypeBase, "docs/http-api.md#") {
			t.Errorf("%s does not point into docs/http-api.md", k.URI())
		}
	}
}
