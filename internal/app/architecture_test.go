package app

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/pkg/events"
)

// architectureDoc is the one picture of kefu, checked here.
const architectureDoc = "../../docs/architecture.md"

// TestArchitectureDoc keeps docs/architecture.md true: its roles and
// modules are the roles table, its streams and subjects those of
// pkg/events, its buckets those declared in internal/bus, its paths those
// of docs/openapi.yaml, and its durable consumers, with their streams and
// filters, the ones `kefu all` creates. A name the page lacks, or one it
// invents, fails the test.
func TestArchitectureDoc(t *testing.T) {
	b, err := os.ReadFile(architectureDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, p := range architectureProblems(t, doc) {
		t.Error(p)
	}
	awaitDurableConsumersOfAll(t, func(live []string) []string { return consumerProblems(doc, live) })
}

// TestArchitectureDocFindsDrift changes the page as drift would and
// expects the check to say so.
func TestArchitectureDocFindsDrift(t *testing.T) {
	b, err := os.ReadFile(architectureDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	live := consumerRows(doc)
	for _, c := range []struct{ name, old, new, want string }{
		{"a role missing", "| `feedback` | `feedback` |\n", "", "roles: docs/architecture.md misses feedback"},
		{"a module missing from a role", "| `notifier` | `notifier`, `queuecare` |", "| `notifier` | `notifier` |", "role notifier runs"},
		{"a stream invented", "| `KEFU_DLQ` | `kefu.dlq.>` |", "| `KEFU_DLQ` | `kefu.dlq.>` | `notifier` |\n| `KEFU_AUDIT` | `kefu.audit.>` |", "streams: docs/architecture.md names KEFU_AUDIT"},
		{"a subject missing", "| `kefu.notify.failed` | `KEFU_NOTIFY` | `notifier`, `queuecare` | other teams |\n", "", "misses kefu.notify.failed"},
		{"a consumer of a subject missing", "| `kefu.kf.wait.estimated` | `KEFU_KF` | `estimator` | `notifier`, `queuecare`, `console` |", "| `kefu.kf.wait.estimated` | `KEFU_KF` | `estimator` | `queuecare`, `console` |", "modules consuming kefu.kf.wait.estimated: docs/architecture.md misses notifier"},
		{"a dependency missing", "| `queuecare` | `wechat`, `links` |", "| `queuecare` | `wechat` |", "dependencies of queuecare: docs/architecture.md misses links"},
		{"a hidden module missing", "| `links` (hidden: the feedback links, `internal/feedbacklink`) | — |\n", "", "modules and hidden modules: docs/architecture.md misses links"},
		{"a bucket invented", "| `kefu_token` | any", "| `kefu_tokens` | any", "names kefu_tokens"},
		{"a path missing", "| `/api/kf/stale` | `queuecare` |\n", "", "HTTP paths: docs/architecture.md misses /api/kf/stale"},
		{"an unknown module", "| `/api/kf/queue` | `estimator` |", "| `/api/kf/queue` | `waiter` |", "waiter is not a module"},
		{"a package that does not exist", "| `feedback` | `services/feedback` |", "| `feedback` | `services/feedbacks` |", "no package services/feedbacks"},
		{"a module's consumers disagree", "`notifier-sessions`, `notifier-wait` |", "`notifier-sessions` |", "durable consumers of notifier"},
		{"a publisher the subjects table does not know", "| `feedback` | `services/feedback` | — |", "| `feedback` | `services/feedback` | `kefu.notify.sent` |", "module feedback publishes kefu.notify.sent"},
		{"the picture without a stream", "──▶ KEFU_NOTIFY  kefu.notify.>", "──▶ kefu.notify.>", "the picture does not show KEFU_NOTIFY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(doc, c.old) {
				t.Fatalf("docs/architecture.md no longer contains %q: update this case", c.old)
			}
			problems := architectureProblems(t, strings.Replace(doc, c.old, c.new, 1))
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Errorf("no problem says %q; got %q", c.want, problems)
			}
		})
	}
	t.Run("a consumer kefu all does not create", func(t *testing.T) {
		problems := consumerProblems(doc, slices.DeleteFunc(slices.Clone(live), func(c string) bool { return strings.HasPrefix(c, "feedback-posts ") }))
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "names feedback-posts KEFU_TUCAO") }) {
			t.Errorf("a missing consumer is not reported: %q", problems)
		}
	})
	t.Run("a filter changed", func(t *testing.T) {
		changed := slices.Clone(live)
		for i, c := range changed {
			changed[i] = strings.Replace(c, "notifier-wait KEFU_KF kefu.kf.wait.estimated", "notifier-wait KEFU_KF kefu.kf.>", 1)
		}
		if problems := consumerProblems(doc, changed); !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "misses notifier-wait KEFU_KF kefu.kf.>") }) {
			t.Errorf("a changed filter is not reported: %q", problems)
		}
	})
}

// architectureProblems checks the page against the code, without a
// running kefu.
func architectureProblems(t *testing.T, doc string) []string {
	t.Helper()
	c := &archCheck{doc: doc}
	modules := c.roles()
	c.isModule = func(m string) bool { return slices.Contains(modules, m) }
	picture := c.codeBlock()
	for _, name := range append(slices.Clone(modules), slices.Collect(maps.Keys(events.StreamSubjects))...) {
		if !strings.Contains(picture, name) {
			c.errorf("the picture does not show %s", name)
		}
	}
	c.dependencies(t)
	c.streams()
	c.subjects(subjectConstants(t))
	c.modules(modules)
	for _, row := range c.table("KV buckets") {
		c.checkModules("bucket "+row[0], row[1]+row[2])
	}
	c.sameSet("buckets", c.column("KV buckets", 0), bus.Buckets)
	for _, row := range c.table("HTTP endpoints") {
		if row[1] != "every role" {
			c.checkModules("path "+row[0], row[1])
		}
	}
	c.sameSet("HTTP paths", c.column("HTTP endpoints", 0), openAPIPaths(t))
	for _, row := range c.table("Durable consumers") {
		c.checkModules("consumer "+row[0], row[3])
	}
	return c.problems
}

// consumerProblems compares the page's durable consumers with live ones,
// each "durable stream filter".
func consumerProblems(doc string, live []string) []string {
	c := &archCheck{doc: doc}
	c.sameSet("durable consumers (durable stream filter) of kefu all", consumerRows(doc), live)
	return c.problems
}

// consumerRows are the page's durable consumers as "durable stream filter".
func consumerRows(doc string) []string {
	c := &archCheck{doc: doc}
	var out []string
	for _, row := range c.table("Durable consumers") {
		out = append(out, strings.Join([]string{c.one(row[0]), c.one(row[1]), c.one(row[2])}, " "))
	}
	return out
}

// awaitDurableConsumersOfAll starts `kefu all` with every optional module
// and waits until problems finds nothing wrong with its durable consumers
// ("durable stream filter"); after 20 s it fails with the last problems.
func awaitDurableConsumersOfAll(t *testing.T, problems func(live []string) []string) {
	t.Helper()
	srv := natstest.Run(t, nil)
	tc := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(tc.Close)
	r := startAll(t, map[string]string{
		"KEFU_NATS_URL": srv.ClientURL(), "KEFU_TUCAO_PRODUCT_ID": tc.ProductID(), "KEFU_TUCAO_SECRET": tc.Secret(),
		"KEFU_TUCAO_API_BASE": tc.URL(), "KEFU_KF_CHOOSE_KEYWORDS": "人工",
	})
	defer r.stop()
	_, js := natstest.Connect(t, srv)
	var got, last []string
	list := func() bool {
		got = got[:0]
		ctx := context.Background()
		for stream := range events.StreamSubjects {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				last = []string{fmt.Sprintf("stream %s: %v", stream, err)}
				return false
			}
			consumers := s.ListConsumers(ctx)
			for ci := range consumers.Info() {
				if ci.Config.Durable != "" {
					got = append(got, strings.Join([]string{ci.Config.Durable, stream, ci.Config.FilterSubject}, " "))
				}
			}
			if err := consumers.Err(); err != nil {
				last = []string{fmt.Sprintf("consumers of %s: %v", stream, err)}
				return false
			}
		}
		last = problems(got)
		return len(last) == 0
	}
	natstest.Eventually(t, 90*time.Second, list, "kefu all's durable consumers as docs/architecture.md names them: %v", lazy(func() string { return strings.Join(last, "; ") }))
}

// lazy is formatted when printed, not when passed.
type lazy func() string

func (l lazy) String() string { return l() }

// archCheck collects what is wrong with the page.
type archCheck struct {
	doc      string
	isModule func(string) bool
	problems []string
}

func (c *archCheck) errorf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// roles compares the roles table with the page's and returns every
// module a role runs.
func (c *archCheck) roles() []string {
	var modules, want []string
	for _, r := range roles {
		want = append(want, r.name)
		for _, m := range r.modules {
			if !slices.Contains(modules, m) {
				modules = append(modules, m)
			}
		}
	}
	for _, row := range c.table("Roles") {
		name := c.one(row[0])
		if r, ok := findRole(name); ok && !slices.Equal(names(row[1]), r.modules) {
			c.errorf("role %s runs %q, the page says %q", name, r.modules, names(row[1]))
		}
	}
	c.sameSet("roles", c.column("Roles", 0), want)
	return modules
}

// dependencies compares the module dependencies with ModuleGraph.
func (c *archCheck) dependencies(t *testing.T) {
	t.Helper()
	graph, err := ModuleGraph()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for _, r := range graph {
		for _, m := range r.Modules {
			want[m.Name] = m.Deps
		}
	}
	for _, row := range c.table("Module dependencies") {
		module := names(row[0])
		if len(module) == 0 {
			c.errorf("module dependencies: row %q names no module", row[0])
			continue
		}
		if deps, ok := want[module[0]]; ok {
			c.sameSet("dependencies of "+module[0], names(row[1]), deps)
		}
	}
	var got []string
	for _, row := range c.table("Module dependencies") {
		if n := names(row[0]); len(n) > 0 {
			got = append(got, n[0]) // the rest of the cell says what a hidden module is
		}
	}
	c.sameSet("modules and hidden modules", got, slices.Collect(maps.Keys(want)))
}

func (c *archCheck) streams() {
	for _, row := range c.table("Streams") {
		stream := c.one(row[0])
		if subjects, ok := events.StreamSubjects[stream]; ok && !slices.Equal(names(row[1]), subjects) {
			c.errorf("stream %s captures %q, the page says %q", stream, subjects, names(row[1]))
		}
		c.checkModules("stream "+stream, row[2])
	}
	c.sameSet("streams", c.column("Streams", 0), append(slices.Collect(maps.Keys(events.StreamSubjects)), bus.SpoolStream))
}

// subjects checks each subject's stream, its publishers' names and the
// modules whose consumers' filters cover it.
func (c *archCheck) subjects(want []string) {
	consumers := c.table("Durable consumers")
	for _, row := range c.table("Subjects") {
		subject := c.one(row[0])
		if stream := streamOf(subject); c.one(row[1]) != stream {
			c.errorf("subject %s is in stream %s, the page says %s", subject, stream, row[1])
		}
		c.checkModules("subject "+subject, row[2])
		var consumedBy, covering []string
		for _, n := range names(row[3]) {
			if c.isModule(n) {
				consumedBy = append(consumedBy, n)
			}
		}
		for _, cons := range consumers {
			if covers(c.one(cons[2]), subject) {
				covering = append(covering, c.one(cons[3]))
			}
		}
		for _, filter := range consoleFilters {
			if covers(filter, subject) {
				covering = append(covering, "console")
			}
		}
		c.sameSet("modules consuming "+subject, consumedBy, covering)
	}
	c.sameSet("subjects", c.column("Subjects", 0), want)
}

// consoleFilters are the filters of the console's ephemeral consumers
// (services/console/feed.go), which have no durable name to list.
var consoleFilters = []string{"kefu.wechat.kf.>", "kefu.kf.>", "kefu.tucao.post.>"}

// modules checks the modules table against the roles, the packages, the
// subjects table, the consumers table and the buckets.
func (c *archCheck) modules(want []string) {
	publishers := map[string][]string{}
	for _, row := range c.table("Subjects") {
		publishers[c.one(row[0])] = names(row[2])
	}
	for _, row := range c.table("Modules") {
		module := c.one(row[0])
		for _, dir := range names(row[1]) {
			if _, err := os.Stat(filepath.Join("../..", dir)); err != nil {
				c.errorf("module %s: no package %s", module, dir)
			}
		}
		for _, s := range names(row[2]) {
			if !slices.Contains(publishers[s], module) {
				c.errorf("module %s publishes %s, but the subjects table does not say so", module, s)
			}
		}
		var durables []string
		for _, cons := range c.table("Durable consumers") {
			if c.one(cons[3]) == module {
				durables = append(durables, c.one(cons[0]))
			}
		}
		if module != "console" {
			c.sameSet("durable consumers of "+module, names(row[3]), durables)
		}
		for _, b := range names(row[4]) {
			if !slices.Contains(bus.Buckets, b) {
				c.errorf("module %s: bucket %s is not declared in internal/bus/buckets.go", module, b)
			}
		}
	}
	c.sameSet("modules", c.column("Modules", 0), want)
}

// section is the text under the level-two heading, up to the next one.
func (c *archCheck) section(heading string) string {
	_, rest, ok := strings.Cut(c.doc, "\n## "+heading+"\n")
	if !ok {
		c.errorf("docs/architecture.md has no section %q", heading)
		return ""
	}
	body, _, _ := strings.Cut(rest, "\n## ")
	return body
}

// table is the rows of the first table under heading, without its header.
func (c *archCheck) table(heading string) [][]string {
	var rows [][]string
	header := true
	for _, line := range strings.Split(c.section(heading), "\n") {
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break
			}
			continue
		}
		if header || strings.HasPrefix(line, "|---") {
			header = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, append(cells, "", "", "", "", "")) // short rows read as empty cells
	}
	return rows
}

// column is the one name of each row's i-th cell.
func (c *archCheck) column(heading string, i int) []string {
	var out []string
	for _, row := range c.table(heading) {
		out = append(out, c.one(row[i]))
	}
	return out
}

// codeBlock is the picture: the first fenced block.
func (c *archCheck) codeBlock() string {
	parts := strings.SplitN(c.doc, "```", 3)
	if len(parts) < 3 {
		c.errorf("docs/architecture.md has no picture")
		return ""
	}
	return parts[1]
}

var backticked = regexp.MustCompile("`([^`]+)`")

// names are the backticked names of a cell.
func names(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// one is the one backticked name of a cell.
func (c *archCheck) one(cell string) string {
	n := names(cell)
	if len(n) != 1 {
		c.errorf("docs/architecture.md: cell %q should name exactly one thing", cell)
		return cell
	}
	return n[0]
}

var moduleLike = regexp.MustCompile(`^[a-z]+$`)

// checkModules reports a backticked name of cell that looks like a
// module (one lower-case word) and is none.
func (c *archCheck) checkModules(what, cell string) {
	for _, n := range names(cell) {
		if moduleLike.MatchString(n) && !c.isModule(n) {
			c.errorf("%s: %s is not a module of any role", what, n)
		}
	}
}

func (c *archCheck) sameSet(what string, got, want []string) {
	g := slices.Compact(slices.Sorted(slices.Values(got)))
	w := slices.Compact(slices.Sorted(slices.Values(want)))
	for _, x := range g {
		if !slices.Contains(w, x) {
			c.errorf("%s: docs/architecture.md names %s, which does not exist", what, x)
		}
	}
	for _, x := range w {
		if !slices.Contains(g, x) {
			c.errorf("%s: docs/architecture.md misses %s", what, x)
		}
	}
}

// placeholder is a token the page writes for any name: <msgtype>, <role>.
var placeholder = regexp.MustCompile(`<[a-z]+>$`)

// subjectConstants are the values of pkg/events' Subject* constants, with
// a prefix written as the page writes it (kefu.dlq.<role>).
func subjectConstants(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../pkg/events/subjects.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	suffix := map[string]string{"SubjectMessagePrefix": "<msgtype>", "SubjectEventPrefix": "<event>", "SubjectDLQPrefix": "<role>"}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !strings.HasPrefix(n.Name, "Subject") || !ok {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("pkg/events: %s: %v", n.Name, err)
				}
				if strings.HasSuffix(n.Name, "Prefix") {
					s, ok := suffix[n.Name]
					if !ok {
						t.Fatalf("pkg/events: %s: say in architecture_test.go how docs/architecture.md writes it", n.Name)
					}
					v += s
				}
				out = append(out, v)
			}
		}
	}
	return out
}

// streamOf is the stream that captures subject.
func streamOf(subject string) string {
	for stream, subjects := range events.StreamSubjects {
		for _, s := range subjects {
			if covers(s, subject) {
				return stream
			}
		}
	}
	return ""
}

// covers reports whether every subject matching pattern (where the page's
// <name> is one token) matches filter.
func covers(filter, pattern string) bool {
	pattern = placeholder.ReplaceAllString(pattern, "*")
	f, p := strings.Split(filter, "."), strings.Split(pattern, ".")
	for i, ft := range f {
		if ft == ">" {
			return i < len(p)
		}
		if i >= len(p) || p[i] == ">" || (ft != "*" && ft != p[i]) {
			return false
		}
	}
	return len(f) == len(p)
}

// openAPIPaths are the paths of docs/openapi.yaml.
func openAPIPaths(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return slices.Collect(maps.Keys(doc.Paths))
}
