package docs

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// The official meta-schemas, vendored under schemas/ (see schemas/README.md)
// and registered by their $id, so that validating needs no network.
var metaSchemas = map[string]string{
	"https://spec.openapis.org/oas/3.1/schema/2022-10-07":      "schemas/openapi-3.1-schema.json",
	"https://spec.openapis.org/oas/3.1/schema-base/2022-10-07": "schemas/openapi-3.1-schema-base.json",
	"https://spec.openapis.org/oas/3.1/dialect/base":           "schemas/openapi-3.1-dialect-base.json",
	"https://spec.openapis.org/oas/3.1/meta/base":              "schemas/openapi-3.1-meta-base.json",
	"http://asyncapi.com/definitions/3.0.0/asyncapi.json":      "schemas/asyncapi-3.0.0.json",
}

const (
	// openAPISchema checks the document and, through the OpenAPI base
	// dialect, every Schema Object in it against JSON Schema 2020-12.
	openAPISchema  = "https://spec.openapis.org/oas/3.1/schema-base/2022-10-07"
	asyncAPISchema = "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
)

// metaCompiler knows the vendored meta-schemas and nothing else: a
// reference to any other URL fails instead of being fetched.
func metaCompiler(t *testing.T) *jsonschema.Compiler {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	for id, path := range metaSchemas {
		doc, err := readJSONValue(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got, _ := doc.(map[string]any)["$id"].(string); got != id {
			t.Fatalf("%s: $id is %q, want %q", path, got, id)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return c
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, &os.PathError{Op: "load", Path: url, Err: os.ErrNotExist}
}

func readJSONValue(path string) (any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return jsonschema.UnmarshalJSON(f)
}

// readYAMLValue reads a YAML document as the JSON value it denotes.
func readYAMLValue(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(j))
}

func validateAgainst(t *testing.T, schemaID, path string, doc any) {
	t.Helper()
	sch, err := metaCompiler(t).Compile(schemaID)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaID, err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Errorf("%s is not valid against %s:\n%v", path, schemaID, err)
	}
}

func TestAsyncAPIIsValidAgainstTheOfficialSchema(t *testing.T) {
	doc, err := readJSONValue("asyncapi.json")
	if err != nil {
		t.Fatal(err)
	}
	validateAgainst(t, asyncAPISchema, "asyncapi.json", doc)
}

func TestOpenAPIIsValidAgainstTheOfficialSchema(t *testing.T) {
	doc, err := readYAMLValue("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	validateAgainst(t, openAPISchema, "openapi.yaml", doc)
}

// The meta-schemas must catch a broken document, or the two tests above
// prove nothing.
func TestMetaSchemasRejectBrokenDocuments(t *testing.T) {
	c := metaCompiler(t)
	for _, tc := range []struct{ schema, doc string }{
		{openAPISchema, `{"openapi": "3.1.0", "info": {"title": "x"}, "paths": {}}`},                                                                              // no info.version
		{openAPISchema, `{"openapi": "3.0.3", "info": {"title": "x", "version": "1"}, "paths": {}}`},                                                              // not 3.1
		{openAPISchema, `{"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {"/a": {"get": {"responses": {"2000": {"description": "x"}}}}}}`},  // bad status
		{openAPISchema, `{"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "components": {"schemas": {"a": {"type": "integer", "minimum": "zero"}}}}`}, // bad JSON Schema
		{asyncAPISchema, `{"asyncapi": "3.0.0", "info": {"title": "x"}}`},
		{asyncAPISchema, `{"asyncapi": "3.0.0", "info": {"title": "x", "version": "1"}, "channels": {"c": {"address": 1}}}`},
	} {
		sch, err := c.Compile(tc.schema)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		if sch.Validate(doc) == nil {
			t.Errorf("%s accepts %s", tc.schema, tc.doc)
		}
	}
}

// Every vendored file is registered, and every registered one is vendored.
func TestEveryVendoredSchemaIsRegistered(t *testing.T) {
	files, err := filepath.Glob("schemas/*.json")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, p := range metaSchemas {
		registered[p] = true
	}
	for _, f := range files {
		if !registered[filepath.ToSlash(f)] {
			t.Errorf("%s is vendored but not registered in metaSchemas", f)
		}
	}
	if len(files) != len(metaSchemas) {
		t.Errorf("%d vendored schemas, %d registered", len(files), len(metaSchemas))
	}
}
