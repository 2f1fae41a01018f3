package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// The AsyncAPI document is what other teams read (and generate code from),
// so these tests keep it true to the Go types, the subject and stream
// constants, the golden files and the headers the codec writes: a field
// added, renamed, retyped or made optional in Go without the same change in
// docs/asyncapi.json fails here.

const (
	asyncAPIPath  = "../../docs/asyncapi.json"
	eventsGuide   = "../../docs/events.md"
	busPackageDir = "../../internal/bus"
)

// loadJSON decodes with UseNumber so that the schema checker can tell an
// integer from a fraction.
func loadJSON(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	v, err := decodeJSON(data)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return v
}

func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// asyncAPI is the parsed document with the lookups the tests need.
type asyncAPI struct {
	root       map[string]any
	channels   map[string]map[string]any
	operations map[string]map[string]any
	messages   map[string]map[string]any
}

func loadAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	root, ok := loadJSON(t, asyncAPIPath).(map[string]any)
	if !ok {
		t.Fatal("asyncapi: the document is not an object")
	}
	components := object(t, root, "components")
	return asyncAPI{
		root:       root,
		channels:   objects(t, root, "channels"),
		operations: objects(t, root, "operations"),
		messages:   objects(t, components, "messages"),
	}
}

func object(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("asyncapi: %q is not an object", key)
	}
	return v
}

func objects(t *testing.T, m map[string]any, key string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for k, v := range object(t, m, key) {
		o, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("asyncapi: %s.%s is not an object", key, k)
		}
		out[k] = o
	}
	return out
}

// resolve follows a local reference ("#/components/schemas/X").
func (d asyncAPI) resolve(ref string) (any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("reference %q is not local", ref)
	}
	var cur any = d.root
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("reference %q: %q is inside a non-object", ref, tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("reference %q: no %q", ref, tok)
		}
	}
	return cur, nil
}

// deref returns the schema a $ref points at, or the schema itself.
func (d asyncAPI) deref(t *testing.T, schema map[string]any) map[string]any {
	t.Helper()
	ref, ok := schema["$ref"].(string)
	if !ok {
		return schema
	}
	v, err := d.resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", ref)
	}
	return m
}

func (d asyncAPI) messageOf(t *testing.T, channel map[string]any) (string, map[string]any) {
	t.Helper()
	msgs, ok := channel["messages"].(map[string]any)
	if !ok || len(msgs) != 1 {
		t.Fatalf("channel %v must carry exactly one message", channel["address"])
	}
	for key, v := range msgs {
		ref, _ := v.(map[string]any)["$ref"].(string)
		name := strings.TrimPrefix(ref, "#/components/messages/")
		m, ok := d.messages[name]
		if !ok {
			t.Fatalf("channel %v: message %q is not under components.messages", channel["address"], ref)
		}
		return key, m
	}
	panic("unreachable")
}

// sampleSubject fills a channel address's parameters with their first example.
func sampleSubject(t *testing.T, channel map[string]any) string {
	t.Helper()
	addr := channel["address"].(string)
	params, _ := channel["parameters"].(map[string]any)
	for name, p := range params {
		examples, _ := p.(map[string]any)["examples"].([]any)
		if len(examples) == 0 {
			t.Fatalf("channel %s: parameter %s needs examples", addr, name)
		}
		addr = strings.ReplaceAll(addr, "{"+name+"}", examples[0].(string))
	}
	return addr
}

var addressParam = regexp.MustCompile(`\{([a-z_]+)\}`)

func TestAsyncAPIDocumentIsWellFormed(t *testing.T) {
	d := loadAsyncAPI(t)
	if d.root["asyncapi"] != "3.0.0" {
		t.Errorf("asyncapi version %v, want 3.0.0", d.root["asyncapi"])
	}

	t.Run("every reference resolves", func(t *testing.T) {
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch v := v.(type) {
			case map[string]any:
				if ref, ok := v["$ref"].(string); ok {
					if _, err := d.resolve(ref); err != nil {
						t.Errorf("%s: %v", path, err)
					}
				}
				for k, c := range v {
					walk(path+"/"+k, c)
				}
			case []any:
				for i, c := range v {
					walk(path+"/"+strconv.Itoa(i), c)
				}
			}
		}
		walk("#", d.root)
	})

	t.Run("every channel names its parameters and its stream", func(t *testing.T) {
		for key, ch := range d.channels {
			addr, _ := ch["address"].(string)
			params, _ := ch["parameters"].(map[string]any)
			var inAddress []string
			for _, m := range addressParam.FindAllStringSubmatch(addr, -1) {
				inAddress = append(inAddress, m[1])
			}
			var declared []string
			for name := range params {
				declared = append(declared, name)
			}
			sort.Strings(inAddress)
			sort.Strings(declared)
			if !slices.Equal(inAddress, declared) {
				t.Errorf("channel %s: address parameters %v, declared %v", key, inAddress, declared)
			}
			if _, ok := events.StreamSubjects[fmt.Sprint(ch["x-kefu-stream"])]; !ok {
				t.Errorf("channel %s: x-kefu-stream %v is not a stream of pkg/events", key, ch["x-kefu-stream"])
			}
		}
	})

	t.Run("every channel has exactly one receive operation with its message", func(t *testing.T) {
		ops := map[string]int{}
		for name, op := range d.operations {
			if op["action"] != "receive" {
				t.Errorf("operation %s: action %v; other teams only receive", name, op["action"])
			}
			ref, _ := op["channel"].(map[string]any)["$ref"].(string)
			key := strings.TrimPrefix(ref, "#/channels/")
			ch, ok := d.channels[key]
			if !ok {
				t.Errorf("operation %s: channel %q does not exist", name, ref)
				continue
			}
			ops[key]++
			msgKey, _ := d.messageOf(t, ch)
			msgs, _ := op["messages"].([]any)
			if len(msgs) != 1 || msgs[0].(map[string]any)["$ref"] != ref+"/messages/"+msgKey {
				t.Errorf("operation %s: messages %v, want the channel's message %s", name, msgs, ref+"/messages/"+msgKey)
			}
		}
		for key := range d.channels {
			if ops[key] != 1 {
				t.Errorf("channel %s has %d receive operations, want 1", key, ops[key])
			}
		}
	})
}

// goConsts reads the string constants declared in the non-test Go files of
// dir, so that a constant added to the contract is seen without this test
// listing it.
func goConsts(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					s, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[name.Name] = s
				}
			}
		}
	}
	return out
}

func withPrefix(consts map[string]string, prefix string) []string {
	var out []string
	for name, v := range consts {
		if strings.HasPrefix(name, prefix) {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// subjectMatches applies NATS wildcard rules: * is one token, > the rest.
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(p) == len(s)
}

func TestAsyncAPIChannelsCoverSubjectsAndStreams(t *testing.T) {
	d := loadAsyncAPI(t)
	consts := goConsts(t, ".")

	addresses := map[string]string{} // address -> channel key
	for key, ch := range d.channels {
		addresses[ch["address"].(string)] = key
	}

	var subjects []string
	for name, v := range consts {
		if strings.HasPrefix(name, "Subject") {
			subjects = append(subjects, v)
		}
	}
	if len(subjects) == 0 {
		t.Fatal("no Subject constants found in pkg/events")
	}
	covered := map[string]bool{}
	for _, subj := range subjects {
		switch {
		case strings.HasSuffix(subj, ">"):
			// A wildcard for subscribers: it must select something.
			n := 0
			for _, ch := range d.channels {
				if subjectMatches(subj, sampleSubject(t, ch)) {
					n++
				}
			}
			if n == 0 {
				t.Errorf("wildcard %s matches no channel", subj)
			}
		case strings.HasSuffix(subj, "."):
			found := false
			for addr, key := range addresses {
				if p := addressParam.FindStringIndex(addr); p != nil && addr[:p[0]] == subj && p[1] == len(addr) {
					covered[key], found = true, true
				}
			}
			if !found {
				t.Errorf("subject prefix %s has no channel %s{…}", subj, subj)
			}
		default:
			key, ok := addresses[subj]
			if !ok {
				t.Errorf("subject %s has no channel", subj)
			}
			covered[key] = true
		}
	}
	for key, ch := range d.channels {
		if !covered[key] {
			t.Errorf("channel %s (%s) is not a subject constant of pkg/events", key, ch["address"])
		}
	}

	streams := withPrefix(consts, "Stream")
	var declared, used []string
	for s := range events.StreamSubjects {
		declared = append(declared, s)
	}
	for _, ch := range d.channels {
		if s := ch["x-kefu-stream"].(string); !slices.Contains(used, s) {
			used = append(used, s)
		}
	}
	sort.Strings(declared)
	sort.Strings(used)
	if !slices.Equal(streams, declared) || !slices.Equal(streams, used) {
		t.Errorf("streams: constants %v, StreamSubjects %v, channels %v; all three must agree", streams, declared, used)
	}

	for key, ch := range d.channels {
		subj := sampleSubject(t, ch)
		var in []string
		for stream, patterns := range events.StreamSubjects {
			for _, p := range patterns {
				if subjectMatches(p, subj) {
					in = append(in, stream)
				}
			}
		}
		if len(in) != 1 || in[0] != ch["x-kefu-stream"] {
			t.Errorf("channel %s: %s is captured by streams %v, documented %v", key, subj, in, ch["x-kefu-stream"])
		}
	}
}

// goTypeOf is the Go type DecodeSubject gives a channel's messages; nil
// for a channel outside the event types (the dead-letter subjects).
func goTypeOf(t *testing.T, ch map[string]any) reflect.Type {
	t.Helper()
	ev, err := events.DecodeSubject(sampleSubject(t, ch), []byte(`{}`))
	if errors.Is(err, events.ErrUnknownSubject) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return reflect.TypeOf(ev)
}

func TestAsyncAPIMessagesMatchDecodeSubject(t *testing.T) {
	d := loadAsyncAPI(t)
	for key, ch := range d.channels {
		_, msg := d.messageOf(t, ch)
		typ := goTypeOf(t, ch)
		want := "<none>"
		if typ != nil {
			want = "events." + typ.Name()
		}
		got, ok := msg["x-go-type"].(string)
		if !ok {
			got = "<none>"
		}
		if got != want {
			t.Errorf("channel %s: message x-go-type %s, DecodeSubject gives %s", key, got, want)
		}
	}
}

type jsonField struct {
	name      string
	omitempty bool
	typ       reflect.Type
}

// jsonFields lists the JSON members of a struct as encoding/json writes
// them, with embedded structs promoted.
func jsonFields(typ reflect.Type) []jsonField {
	var out []jsonField
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty"), typ: f.Type})
	}
	return out
}

var (
	timeType       = reflect.TypeOf(time.Time{})
	rawMessageType = reflect.TypeOf(json.RawMessage(nil))
)

// schemaTypes is a schema's "type" as a list.
func schemaTypes(schema map[string]any) []string {
	switch v := schema["type"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, s := range v {
			out = append(out, fmt.Sprint(s))
		}
		return out
	}
	return nil
}

type goSchemaChecker struct {
	t      *testing.T
	doc    asyncAPI
	consts map[string]string
}

// checkStruct asserts that a closed object schema has exactly the JSON
// members of typ, with the same names, optionality and types.
func (c goSchemaChecker) checkStruct(path string, schema map[string]any, typ reflect.Type) {
	schema = c.doc.deref(c.t, schema)
	if got, want := schema["x-go-type"], "events."+typ.Name(); got != want {
		c.t.Errorf("%s: schema x-go-type %v, want %s", path, got, want)
	}
	if !slices.Equal(schemaTypes(schema), []string{"object"}) || schema["additionalProperties"] != false {
		c.t.Errorf("%s: a Go struct is a closed object: type object, additionalProperties false", path)
	}
	props, _ := schema["properties"].(map[string]any)
	var goNames, schemaNames, goRequired, schemaRequired []string
	for _, f := range jsonFields(typ) {
		goNames = append(goNames, f.name)
		if !f.omitempty {
			goRequired = append(goRequired, f.name)
		}
		p, ok := props[f.name].(map[string]any)
		if !ok {
			continue
		}
		c.checkField(path+"."+f.name, p, f)
	}
	for name := range props {
		schemaNames = append(schemaNames, name)
	}
	req, _ := schema["required"].([]any)
	for _, r := range req {
		schemaRequired = append(schemaRequired, fmt.Sprint(r))
	}
	if onlyGo, onlySchema := difference(goNames, schemaNames); len(onlyGo)+len(onlySchema) > 0 {
		c.t.Errorf("%s: json names only in Go %v, properties only in the schema %v", path, onlyGo, onlySchema)
	}
	if onlyGo, onlySchema := difference(goRequired, schemaRequired); len(onlyGo)+len(onlySchema) > 0 {
		c.t.Errorf("%s: fields without omitempty only in Go %v, required only in the schema %v", path, onlyGo, onlySchema)
	}
}

// difference returns the members of a missing from b and of b missing from a.
func difference(a, b []string) (onlyA, onlyB []string) {
	for _, x := range a {
		if !slices.Contains(b, x) {
			onlyA = append(onlyA, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			onlyB = append(onlyB, x)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

func (c goSchemaChecker) checkField(path string, schema map[string]any, f jsonField) {
	if _, isRef := schema["$ref"]; !isRef || f.typ.Kind() != reflect.Struct {
		c.checkType(path, schema, f.typ)
	} else {
		c.checkStruct(path, schema, f.typ)
	}
	if prefix, ok := schema["x-go-consts"].(string); ok {
		want := withPrefix(c.consts, prefix)
		var got []string
		enum, _ := schema["enum"].([]any)
		for _, e := range enum {
			got = append(got, fmt.Sprint(e))
		}
		sort.Strings(got)
		if len(want) == 0 || !slices.Equal(got, want) {
			c.t.Errorf("%s: enum %v, constants %s* are %v", path, got, prefix, want)
		}
	}
}

func (c goSchemaChecker) checkType(path string, schema map[string]any, typ reflect.Type) {
	schema = c.doc.deref(c.t, schema)
	types := schemaTypes(schema)
	var want string
	nilable := false
	switch {
	case typ == rawMessageType:
		// Passed through untouched: any JSON value.
		if types != nil {
			c.t.Errorf("%s: a json.RawMessage is passed through as is; its schema must not restrict the type (has %v)", path, types)
		}
		return
	case typ == timeType:
		want = "string"
		if schema["format"] != "date-time" {
			c.t.Errorf("%s: a time.Time is an RFC 3339 string: format date-time", path)
		}
	case typ.Kind() == reflect.String:
		want = "string"
	case typ.Kind() == reflect.Bool:
		want = "boolean"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		want = "integer"
	case typ.Kind() == reflect.Float32 || typ.Kind() == reflect.Float64:
		want = "number"
	case typ.Kind() == reflect.Slice:
		want, nilable = "array", true
		items, ok := schema["items"].(map[string]any)
		if !ok {
			c.t.Errorf("%s: an array needs items", path)
			break
		}
		if typ.Elem().Kind() == reflect.Struct && typ.Elem() != timeType {
			c.checkStruct(path+"[]", items, typ.Elem())
		} else {
			c.checkType(path+"[]", items, typ.Elem())
		}
	case typ.Kind() == reflect.Map:
		want, nilable = "object", true
		if schema["additionalProperties"] != true {
			c.t.Errorf("%s: a Go map is an open object: additionalProperties true", path)
		}
	case typ.Kind() == reflect.Struct:
		c.checkStruct(path, schema, typ)
		return
	default:
		c.t.Errorf("%s: no JSON Schema mapping for Go type %s", path, typ)
		return
	}
	ok := slices.Contains(types, want)
	for _, ty := range types {
		if ty != want && (ty != "null" || !nilable) {
			ok = false
		}
	}
	if !ok {
		c.t.Errorf("%s: Go %s needs schema type %q, has %v", path, typ, want, types)
	}
}

// TestAsyncAPIPayloadSchemasMatchGoTypes is the guard against renamed,
// added, removed or retyped fields: the schema of every message is compared
// with the json tags of its Go type.
func TestAsyncAPIPayloadSchemasMatchGoTypes(t *testing.T) {
	d := loadAsyncAPI(t)
	c := goSchemaChecker{t: t, doc: d, consts: goConsts(t, ".")}
	seen := map[reflect.Type]bool{}
	for key, ch := range d.channels {
		typ := goTypeOf(t, ch)
		if typ == nil || seen[typ] {
			continue
		}
		seen[typ] = true
		_, msg := d.messageOf(t, ch)
		payload, ok := msg["payload"].(map[string]any)
		if !ok {
			t.Errorf("channel %s: message has no payload schema", key)
			continue
		}
		c.checkStruct(typ.Name(), payload, typ)
	}
	if len(seen) == 0 {
		t.Fatal("no event types found through the channels")
	}
}

// validate is a small JSON Schema checker for the keywords the document
// uses. A keyword it does not know is an error, so the document cannot
// rely on a rule this test silently skips.
func (d asyncAPI) validate(schema map[string]any, v any, path string) []string {
	var errs []string
	fail := func(format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	if ref, ok := schema["$ref"].(string); ok {
		target, err := d.resolve(ref)
		if err != nil {
			return []string{path + ": " + err.Error()}
		}
		return d.validate(target.(map[string]any), v, path)
	}
	for k := range schema {
		switch k {
		case "type", "properties", "required", "additionalProperties", "items", "enum", "const",
			"format", "pattern", "description", "title", "examples":
		default:
			if !strings.HasPrefix(k, "x-") {
				fail("schema keyword %q is not supported by this checker", k)
			}
		}
	}
	if types := schemaTypes(schema); types != nil && !slices.ContainsFunc(types, func(ty string) bool { return isJSONType(v, ty) }) {
		fail("%s is not of type %v", short(v), types)
		return errs
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return reflect.DeepEqual(e, v) }) {
		fail("%s is not one of %v", short(v), enum)
	}
	if c, ok := schema["const"]; ok && !reflect.DeepEqual(c, v) {
		fail("%s is not %v", short(v), c)
	}
	if s, ok := v.(string); ok {
		if p, ok := schema["pattern"].(string); ok {
			re, err := regexp.Compile(p)
			if err != nil {
				fail("pattern %q: %v", p, err)
			} else if !re.MatchString(s) {
				fail("%q does not match %s", s, p)
			}
		}
	}
	switch format := schema["format"]; format {
	case nil:
	case "date-time":
		if s, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				fail("%q is not an RFC 3339 date-time", s)
			}
		}
	case "int64":
		if n, ok := v.(json.Number); ok {
			if _, err := n.Int64(); err != nil {
				fail("%s does not fit an int64", n)
			}
		}
	default:
		fail("format %v is not supported by this checker", format)
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := v[r.(string)]; !ok {
				fail("required member %q is missing", r)
			}
		}
		names := make([]string, 0, len(v))
		for name := range v {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if p, ok := props[name].(map[string]any); ok {
				errs = append(errs, d.validate(p, v[name], path+"."+name)...)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("member %q is not in the schema", name)
				}
			case map[string]any:
				errs = append(errs, d.validate(ap, v[name], path+"."+name)...)
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, item := range v {
				errs = append(errs, d.validate(items, item, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return errs
}

func isJSONType(v any, ty string) bool {
	switch ty {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := strconv.ParseInt(n.String(), 10, 64)
		return err == nil
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

func payloadSchema(t *testing.T, msg map[string]any) map[string]any {
	t.Helper()
	p, ok := msg["payload"].(map[string]any)
	if !ok {
		t.Fatalf("message %v has no payload schema", msg["name"])
	}
	return p
}

// TestGoldenFilesValidateAgainstAsyncAPI checks every golden file (one per
// event type and version, every field set) against its message's schema,
// and that the document's examples are those files.
func TestGoldenFilesValidateAgainstAsyncAPI(t *testing.T) {
	d := loadAsyncAPI(t)
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	withGolden := map[string]bool{}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			msg, ok := d.messages[name]
			if !ok {
				t.Fatalf("components.messages has no %q for %s", name, file)
			}
			withGolden[name] = true
			golden := loadJSON(t, file)
			for _, e := range d.validate(payloadSchema(t, msg), golden, name) {
				t.Error(e)
			}
			examples, _ := msg["examples"].([]any)
			if len(examples) == 0 {
				t.Fatalf("message %s has no example", name)
			}
			example := examples[0].(map[string]any)
			if !reflect.DeepEqual(example["payload"], golden) {
				t.Errorf("the example payload of %s differs from %s", name, file)
			}
		})
	}
	for name, msg := range d.messages {
		if _, versioned := msg["x-go-type"]; versioned && !withGolden[name] {
			t.Errorf("message %s has no golden file testdata/%s.json", name, name)
		}
	}
}

// TestAsyncAPISchemaCheckerRejects proves the checker above can fail: each
// change of a golden payload that the contract forbids is caught.
func TestAsyncAPISchemaCheckerRejects(t *testing.T) {
	d := loadAsyncAPI(t)
	schema := payloadSchema(t, d.messages["session_created.v1"])
	snapshot := payloadSchema(t, d.messages["queue_snapshot.v1"])
	tests := []struct {
		name   string
		schema map[string]any
		golden string
		change func(m map[string]any)
		valid  bool
	}{
		{"the golden file as is is valid", schema, "session_created.v1", func(map[string]any) {}, true},
		{"unknown members of raw are valid: raw is open", schema, "session_created.v1", func(m map[string]any) {
			m["raw"].(map[string]any)["NewElement"] = map[string]any{"x": "1"}
		}, true},
		{"a member not in the schema is rejected", schema, "session_created.v1", func(m map[string]any) { m["kf_nick"] = "x" }, false},
		{"a missing required member is rejected", schema, "session_created.v1", func(m map[string]any) { delete(m, "kf_account") }, false},
		{"a string turned number is rejected", schema, "session_created.v1", func(m map[string]any) { m["openid"] = json.Number("1") }, false},
		{"a fraction where an integer belongs is rejected", schema, "session_created.v1", func(m map[string]any) { m["create_time"] = json.Number("1.5") }, false},
		{"a time that is not RFC 3339 is rejected", schema, "session_created.v1", func(m map[string]any) { m["occurred_at"] = "2026-11-25 10:00:00" }, false},
		{"a member added inside an array item is rejected", snapshot, "queue_snapshot.v1", func(m map[string]any) {
			m["waiting"].([]any)[0].(map[string]any)["vip"] = true
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := loadJSON(t, filepath.Join("testdata", tt.golden+".json")).(map[string]any)
			tt.change(m)
			errs := d.validate(tt.schema, m, tt.golden)
			if tt.valid && len(errs) > 0 {
				t.Errorf("want valid, got %v", errs)
			}
			if !tt.valid && len(errs) == 0 {
				t.Error("want a schema error, got none")
			}
		})
	}
}

// expectedID is the de-duplication id documented for an event's source,
// computed with the package's helpers; "" where the id is not derived from
// the payload alone.
func expectedID(ev events.Event) string {
	switch ev := ev.(type) {
	case events.SessionCreated:
		return events.WeChatEventID(ev.OpenID, ev.CreateTime, "kf_create_session", ev.KfAccount)
	case events.SessionSwitched:
		return events.WeChatEventID(ev.OpenID, ev.CreateTime, "kf_switch_session", ev.FromKfAccount, ev.ToKfAccount)
	case events.SessionClosed:
		return events.WeChatEventID(ev.OpenID, ev.CreateTime, "kf_close_session", ev.KfAccount)
	case events.MessageReceived:
		return events.WeChatMessageID(ev.MsgID)
	case events.EventReceived:
		return events.WeChatEventID(ev.OpenID, ev.CreateTime, ev.Event)
	case events.FeedbackPost:
		return events.TucaoPostID(ev.ID, ev.UpdatedAt)
	case events.Notification:
		return "notify-" + ev.CauseEventID
	}
	return ""
}

// TestAsyncAPIExampleHeadersMatchTheCodec checks each example's headers
// against the header schema and against what Headers writes for the
// example's event.
func TestAsyncAPIExampleHeadersMatchTheCodec(t *testing.T) {
	d := loadAsyncAPI(t)
	for key, ch := range d.channels {
		_, msg := d.messageOf(t, ch)
		if _, versioned := msg["x-go-type"]; !versioned {
			continue
		}
		examples, _ := msg["examples"].([]any)
		if len(examples) == 0 {
			t.Errorf("channel %s: message has no example", key)
			continue
		}
		example := examples[0].(map[string]any)
		hdr, _ := example["headers"].(map[string]any)
		headersSchema, _ := msg["headers"].(map[string]any)
		for _, e := range d.validate(headersSchema, hdr, key+".headers") {
			t.Error(e)
		}
		body, err := json.Marshal(example["payload"])
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.DecodeSubject(sampleSubject(t, ch), body)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := hdr[events.HeaderID].(string)
		source, _ := hdr[events.HeaderSource].(string)
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(hdr[events.HeaderTime]))
		if err != nil {
			t.Errorf("channel %s: ce-time: %v", key, err)
			continue
		}
		want := map[string]any{}
		for k, v := range events.Headers(ev.EventSubject(), id, source, at) {
			want[k] = v
		}
		if !reflect.DeepEqual(hdr, want) {
			t.Errorf("channel %s: example headers %v, the codec writes %v", key, hdr, want)
		}
		if wantID := expectedID(ev); wantID != "" && id != wantID {
			t.Errorf("channel %s: example ce-id %q, the documented rule gives %q", key, id, wantID)
		}
	}
}

func TestAsyncAPIHeaderSchemasMatchTheCode(t *testing.T) {
	d := loadAsyncAPI(t)
	schemas := object(t, object(t, d.root, "components"), "schemas")

	t.Run("the CloudEvents headers are exactly the ones Headers writes", func(t *testing.T) {
		ce := object(t, schemas, "CloudEventHeaders")
		h := events.Headers(events.SubjectSessionClosed, "wx-evt-x", "kefu/ingest/wx1", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		got := map[string]any{}
		var names []string
		for k, v := range h {
			got[k] = v
			names = append(names, k)
		}
		for _, e := range d.validate(ce, got, "headers") {
			t.Error(e)
		}
		var required []string
		for _, r := range ce["required"].([]any) {
			required = append(required, r.(string))
		}
		sort.Strings(names)
		sort.Strings(required)
		if !slices.Equal(names, required) {
			t.Errorf("Headers writes %v, the schema requires %v", names, required)
		}
	})

	t.Run("the dead-letter headers are exactly the bus's Kefu-Dlq-* constants", func(t *testing.T) {
		dlq := object(t, schemas, "DeadLetterHeaders")
		want := withPrefix(goConsts(t, busPackageDir), "HeaderDLQ")
		var got []string
		for name := range object(t, dlq, "properties") {
			if strings.HasPrefix(name, "Kefu-Dlq-") {
				got = append(got, name)
			}
		}
		sort.Strings(got)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("schema has %v, internal/bus declares %v", got, want)
		}
	})
}

// TestEventsGuideNamesEverything keeps docs/events.md, the page other
// teams read, complete: every subject, stream, field and header of the
// AsyncAPI document appears in it.
func TestEventsGuideNamesEverything(t *testing.T) {
	d := loadAsyncAPI(t)
	data, err := os.ReadFile(eventsGuide)
	if err != nil {
		t.Fatal(err)
	}
	guide := string(data)
	need := map[string]bool{}
	for _, ch := range d.channels {
		need[ch["address"].(string)] = true
		need[ch["x-kefu-stream"].(string)] = true
	}
	var walk func(schema map[string]any)
	walk = func(schema map[string]any) {
		schema = d.deref(t, schema)
		props, _ := schema["properties"].(map[string]any)
		for name, p := range props {
			need[name] = true
			walk(p.(map[string]any))
		}
		if items, ok := schema["items"].(map[string]any); ok {
			walk(items)
		}
	}
	for _, msg := range d.messages {
		if p, ok := msg["payload"].(map[string]any); ok {
			walk(p)
		}
		if h, ok := msg["headers"].(map[string]any); ok {
			walk(h)
		}
		if name, ok := msg["x-go-type"].(string); ok {
			need[strings.TrimPrefix(name, "events.")] = true
		}
	}
	// The examples are the golden files, verbatim.
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		golden, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(guide, "```json\n"+string(golden)+"```") {
			t.Errorf("docs/events.md does not show %s verbatim as a ```json example", file)
		}
	}

	var missing []string
	for name := range need {
		// A nested field may be written as its path: `agents[].sessions[].since`.
		if !strings.Contains(guide, "`"+name+"`") && !strings.Contains(guide, "."+name+"`") {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/events.md does not name (in backquotes, or as the end of a `path.name`): %v", missing)
	}
}
