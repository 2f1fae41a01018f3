package docs

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The checks of docs/openapi.yaml that need no running kefu: its version
// is the contract's, every schema compiles (so every $ref resolves), and
// the bearer tokens guard the paths as internal/httpedge does.

func loadOpenAPIDoc(t *testing.T) map[string]any {
	t.Helper()
	doc, err := readYAMLValue("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return doc.(map[string]any)
}

func TestOpenAPIVersionIsTheContractVersion(t *testing.T) {
	oa := loadOpenAPIDoc(t)
	aa, err := readJSONValue("asyncapi.json")
	if err != nil {
		t.Fatal(err)
	}
	got := oa["info"].(map[string]any)["version"]
	want := aa.(map[string]any)["info"].(map[string]any)["version"]
	if got != want {
		t.Errorf("openapi.yaml info.version is %v, asyncapi.json's %v: both are the version of kefu's contract", got, want)
	}
	if oa["openapi"] != "3.1.0" {
		t.Errorf("openapi is %v, want 3.1.0", oa["openapi"])
	}
}

// Every schema of the document compiles under JSON Schema 2020-12, with
// only the document itself to resolve references against, and its examples
// are valid against it.
func TestOpenAPISchemasCompile(t *testing.T) {
	const base = "https://kefu.invalid/openapi.json"
	oa := loadOpenAPIDoc(t)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	if err := c.AddResource(base, any(oa)); err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(ptr string, v any)
	walk = func(ptr string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, sub := range v {
				p := ptr + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
				if k == "schema" || strings.HasPrefix(ptr, "/components/schemas") && strings.Count(ptr, "/") == 2 {
					n++
					sch, err := c.Compile(base + "#" + p)
					if err != nil {
						t.Errorf("schema at %s: %v", p, err)
						continue
					}
					// A schema's examples are valid against it.
					examples, _ := sub.(map[string]any)["examples"].([]any)
					for i, ex := range examples {
						if err := sch.Validate(ex); err != nil {
							t.Errorf("example %d of the schema at %s: %v", i, p, err)
						}
					}
					continue
				}
				walk(p, sub)
			}
		case []any:
			for i, sub := range v {
				walk(fmt.Sprintf("%s/%d", ptr, i), sub)
			}
		}
	}
	walk("", oa)
	if n < 50 {
		t.Errorf("compiled only %d schemas; the walk is broken", n)
	}
}

// The private API answers only to the bearer tokens: GET and HEAD to
// either, every other method to the admin token (httpedge.Tokens.Guard).
func TestOpenAPISecurityMatchesTheTokenGuard(t *testing.T) {
	oa := loadOpenAPIDoc(t)
	schemes := oa["components"].(map[string]any)["securitySchemes"].(map[string]any)
	for _, s := range []string{"adminToken", "apiToken"} {
		sc, _ := schemes[s].(map[string]any)
		if sc["type"] != "http" || sc["scheme"] != "bearer" {
			t.Errorf("security scheme %s is not an HTTP bearer scheme: %v", s, sc)
		}
	}
	var apiOps int
	for path, item := range oa["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			o, ok := op.(map[string]any)
			if !ok {
				continue
			}
			var got []string
			sec, declared := o["security"].([]any)
			for _, req := range sec {
				var names []string
				for name := range req.(map[string]any) {
					names = append(names, name)
				}
				sort.Strings(names)
				got = append(got, strings.Join(names, "+"))
			}
			sort.Strings(got)
			if !declared {
				t.Errorf("%s %s: no security: say who may call it ([] for anyone)", strings.ToUpper(method), path)
				continue
			}
			if path != "/api" && !strings.HasPrefix(path, "/api/") {
				for _, g := range got {
					if strings.Contains(g, "Token") && !slices.Contains(got, "") && path != "/readyz" {
						t.Errorf("%s %s: a public path needs no token, but security is %v", strings.ToUpper(method), path, got)
					}
				}
				continue
			}
			apiOps++
			want := []string{"adminToken"}
			if m := strings.ToUpper(method); m == http.MethodGet || m == http.MethodHead {
				want = []string{"adminToken", "apiToken"}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: security %v, want %v", strings.ToUpper(method), path, got, want)
			}
		}
	}
	if apiOps < 20 {
		t.Errorf("only %d operations under /api/", apiOps)
	}
}
