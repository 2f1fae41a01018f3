package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// These tests keep docs/openapi.yaml and the routes the code registers in
// step: every ServeMux pattern registered by kefu's code (read from the
// source, constants resolved) is documented, and every documented path and
// method is one a registered pattern serves. The live answers are checked
// against the document by internal/app's TestOpenAPIAgainstTheRunningHandlers.

const repoRoot = ".."

// notRoutes are the patterns that are not endpoints of their own, and why.
var notRoutes = map[string]string{
	"/api/kf/":      "mounts the admin API's own mux (internal/kfadmin), whose routes are collected too",
	"/console/api/": "answers 404 for console API paths that do not exist",
}

// skipDirs hold servers that are not kefu's: the fakes of WeChat and Tucao
// (test servers, never documented) and the benchmark harness.
var skipDirs = []string{"internal/wechat/wechattest", "internal/tucao/tucaotest", "bench", "docs"}

// route is one pattern the code registers, and where.
type route struct {
	pattern, at string
}

// registeredRoutes parses every non-test Go file of kefu and returns the
// first argument of each Handle and HandleFunc call whose value is a
// constant string (literals, and constants of the same or an imported
// package joined with +).
func registeredRoutes(t *testing.T) []route {
	t.Helper()
	fset := token.NewFileSet()
	// constDef is a constant's expression and the imports of its file,
	// which its expression may name.
	type constDef struct {
		expr    ast.Expr
		imports map[string]string
	}
	type pkg struct {
		consts  map[string]constDef
		files   []*ast.File
		imports map[*ast.File]map[string]string // local name → directory
	}
	pkgs := map[string]*pkg{} // directory → package
	module := modulePath(t)
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") || d.Name() == "testdata" || slices.Contains(skipDirs, rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		p := pkgs[dir]
		if p == nil {
			p = &pkg{consts: map[string]constDef{}, imports: map[*ast.File]map[string]string{}}
			pkgs[dir] = p
		}
		p.files = append(p.files, f)
		imps := map[string]string{}
		for _, im := range f.Imports {
			ip, _ := strconv.Unquote(im.Path.Value)
			if !strings.HasPrefix(ip, module+"/") {
				continue
			}
			d := strings.TrimPrefix(ip, module+"/")
			name := d[strings.LastIndex(d, "/")+1:]
			if im.Name != nil {
				name = im.Name.Name
			}
			imps[name] = d
		}
		p.imports[f] = imps
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						p.consts[n.Name] = constDef{vs.Values[i], imps}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var eval func(dir string, imps map[string]string, e ast.Expr) (string, bool)
	eval = func(dir string, imps map[string]string, e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.ParenExpr:
			return eval(dir, imps, e.X)
		case *ast.BinaryExpr:
			if e.Op != token.ADD {
				return "", false
			}
			a, ok1 := eval(dir, imps, e.X)
			b, ok2 := eval(dir, imps, e.Y)
			return a + b, ok1 && ok2
		case *ast.Ident:
			if v, ok := pkgs[dir].consts[e.Name]; ok {
				return eval(dir, v.imports, v.expr)
			}
		case *ast.SelectorExpr:
			x, ok := e.X.(*ast.Ident)
			if !ok {
				return "", false
			}
			d, ok := imps[x.Name]
			if p := pkgs[d]; ok && p != nil {
				if v, ok := p.consts[e.Sel.Name]; ok {
					return eval(d, v.imports, v.expr)
				}
			}
		}
		return "", false
	}
	var out []route
	for dir, p := range pkgs {
		for _, f := range p.files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
					return true
				}
				at := fset.Position(call.Pos()).String()
				pattern, ok := eval(dir, p.imports[f], call.Args[0])
				if !ok {
					t.Errorf("%s: the pattern of %s is not a constant this test can read; make it one", at, sel.Sel.Name)
					return true
				}
				out = append(out, route{pattern, at})
				return true
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pattern < out[j].pattern })
	return out
}

func modulePath(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod names no module")
	}
	return string(m[1])
}

// openAPIOperations returns "METHOD /path" for every documented operation.
func openAPIOperations(t *testing.T) []string {
	t.Helper()
	doc, err := readYAMLValue("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := doc.(map[string]any)["paths"].(map[string]any)
	if len(paths) == 0 {
		t.Fatal("openapi.yaml documents no paths")
	}
	var ops []string
	for path, item := range paths {
		for method := range item.(map[string]any) {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				ops = append(ops, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(ops)
	return ops
}

// concrete turns a pattern's path into a request path, a wildcard into "x".
var wildcard = regexp.MustCompile(`\{[^}]*\}`)

func concrete(path string) string {
	path = wildcard.ReplaceAllString(path, "x")
	if path != "/" && strings.HasSuffix(path, "/") {
		// A subtree pattern ("/tucao/webhook/"): a path beneath it.
		path += "x"
	}
	return path
}

func splitPattern(p string) (method, path string) {
	if m, rest, ok := strings.Cut(p, " "); ok {
		return m, rest
	}
	return "", p
}

func TestRegisteredRoutesAreDocumented(t *testing.T) {
	routes := registeredRoutes(t)
	if len(routes) < 30 {
		t.Fatalf("found only %d registered routes; the collector is broken", len(routes))
	}
	ops := openAPIOperations(t)
	documented := http.NewServeMux()
	for _, op := range ops {
		documented.Handle(op, http.NotFoundHandler())
	}
	for _, r := range routes {
		method, path := splitPattern(r.pattern)
		if why, ok := notRoutes[path]; ok && method == "" {
			t.Logf("%s (%s): not an endpoint: %s", r.pattern, r.at, why)
			continue
		}
		if strings.HasSuffix(path, "...}") {
			// {action...}: documented one path per action beneath.
			prefix := path[:strings.LastIndex(path, "{")]
			if !slices.ContainsFunc(ops, func(op string) bool {
				m, p := splitPattern(op)
				return strings.HasPrefix(p, prefix) && (method == "" || m == method)
			}) {
				t.Errorf("%s (%s): nothing documented beneath %s", r.pattern, r.at, prefix)
			}
			continue
		}
		methods := []string{method}
		if method == "" {
			// A pattern without a method: at least one documented.
			methods = []string{"GET", "POST", "PUT", "DELETE"}
		}
		found := false
		for _, m := range methods {
			req := httptest.NewRequest(m, concrete(path), nil)
			if _, p := documented.Handler(req); p != "" {
				if _, dp := splitPattern(p); dp == path || concrete(dp) == concrete(path) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s (%s) is registered but not documented in openapi.yaml", r.pattern, r.at)
		}
	}
}

func TestDocumentedOperationsAreRegistered(t *testing.T) {
	served := http.NewServeMux()
	seen := map[string]bool{}
	for _, r := range registeredRoutes(t) {
		if seen[r.pattern] {
			continue // mounted twice: a service's mux and the one it mounts
		}
		seen[r.pattern] = true
		served.Handle(r.pattern, http.NotFoundHandler())
	}
	for _, op := range openAPIOperations(t) {
		method, path := splitPattern(op)
		req := httptest.NewRequest(method, concrete(path), nil)
		_, p := served.Handler(req)
		_, sp := splitPattern(p)
		if p == "" || notRoutes[sp] != "" {
			t.Errorf("%s is documented but no registered route serves it", op)
		}
	}
}
