package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type grafanaDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource *grafanaDS `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource *grafanaDS `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string     `json:"name"`
			Type       string     `json:"type"`
			Query      any        `json:"query"`
			Datasource *grafanaDS `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

// dashboardMetrics are the metrics operators watch (callbacks, consumers,
// dead letters, the WeChat API, Tucao, notifications): the dashboard must
// chart every one.
var dashboardMetrics = []string{
	"kefu_ingest_callbacks_total", "kefu_ingest_rejected_total", "kefu_ingest_publish_seconds",
	"kefu_consumer_messages_total", "kefu_consumer_redeliveries_total", "kefu_dlq_messages_total", "kefu_consumer_handle_seconds",
	"kefu_wechat_api_requests_total", "kefu_wechat_api_duration_seconds",
	"kefu_tucao_polls_total", "kefu_tucao_posts_published_total",
	"kefu_notify_messages_total", "kefu_notify_latency_seconds",
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true}
)

// metricNames returns the metric names a PromQL expression reads: the
// identifiers left once strings, label matchers, ranges and grouping
// labels are removed that are neither functions, keywords, numbers nor
// Grafana variables.
func metricNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsRune("$0123456789.", rune(s[loc[0]-1])) {
			continue // a Grafana variable or the exponent/unit of a number
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || promKeywords[name] {
			continue
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		name, expr string
		want       []string
	}{
		{name: "rate of a counter with matchers and a Grafana range",
			expr: `sum by (kind, outcome) (rate(kefu_a_total{job=~"$job", x!="0"}[$__rate_interval]))`, want: []string{"kefu_a_total"}},
		{name: "histogram quantile reads the bucket series",
			expr: `histogram_quantile(0.99, sum by (le) (rate(kefu_b_seconds_bucket[5m])))`, want: []string{"kefu_b_seconds_bucket"}},
		{name: "both sides of a binary operation",
			expr: `sum(rate(x_total[1m])) / on (instance) group_left sum(rate(y_total[1m]))`, want: []string{"x_total", "y_total"}},
		{name: "set operators and comparisons",
			expr: `max(a and on (instance) (b == 1))`, want: []string{"a", "b"}},
		{name: "numbers and offsets are no metrics",
			expr: `1e3 * c offset 5m`, want: []string{"c"}},
		{name: "a series selector by name has no metric name", expr: `{__name__=~"kefu_.+"}`, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := metricNames(tt.expr); !slices.Equal(got, tt.want) {
				t.Fatalf("metricNames(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

// exportedMetrics are the kefu_ names in the module's Go source (string
// literals: metric names and a few bucket names, a harmless superset).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	literal := regexp.MustCompile(`"(kefu_[a-z0-9_]+)"`)
	root := repoRoot(t)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "deploy", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllSubmatch(data, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// allPanels flattens rows.
func allPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("grafana", "kefu-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("kefu-dashboard.json: %v", err)
	}
	panels := allPanels(d.Panels)

	dsVar := ""
	t.Run("it has a uid, a title and a Prometheus datasource variable", func(t *testing.T) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("uid %q, title %q: both are needed to import and link the dashboard", d.UID, d.Title)
		}
		for _, v := range d.Templating.List {
			if v.Type == "datasource" && v.Query == "prometheus" {
				dsVar = v.Name
			}
		}
		if dsVar == "" {
			t.Fatal("no templating variable of type datasource with query prometheus")
		}
	})

	t.Run("every panel, query and query variable uses the datasource variable", func(t *testing.T) {
		want := map[string]bool{"${" + dsVar + "}": true, "$" + dsVar: true}
		for _, v := range d.Templating.List {
			if v.Type == "query" && (v.Datasource == nil || !want[v.Datasource.UID]) {
				t.Errorf("variable %s: datasource %+v, want uid ${%s}", v.Name, v.Datasource, dsVar)
			}
		}
		for _, p := range panels {
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || !want[p.Datasource.UID] {
				t.Errorf("panel %q: datasource %+v, want uid ${%s}", p.Title, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				if q.Datasource != nil && !want[q.Datasource.UID] {
					t.Errorf("panel %q query %s: datasource %+v, want uid ${%s}", p.Title, q.RefID, q.Datasource, dsVar)
				}
			}
		}
	})

	t.Run("panels have unique ids and do not overlap on the 24-column grid", func(t *testing.T) {
		ids := map[int]string{}
		for i, p := range panels {
			if other, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, other)
			}
			ids[p.ID] = p.Title
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v is outside the 24-column grid", p.Title, g)
			}
			for _, q := range panels[:i] {
				h := q.GridPos
				if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
					t.Errorf("panels %q and %q overlap", p.Title, q.Title)
				}
			}
		}
	})

	exported := exportedMetrics(t)
	charted := map[string]bool{}
	t.Run("every query reads kefu, go or process metrics that kefu exports", func(t *testing.T) {
		for _, p := range panels {
			for _, q := range p.Targets {
				names := metricNames(q.Expr)
				if len(names) == 0 {
					t.Errorf("panel %q query %s reads no metric: %s", p.Title, q.RefID, q.Expr)
				}
				for _, name := range names {
					switch {
					case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
					case strings.HasPrefix(name, "kefu_"):
						base := name
						for _, suffix := range []string{"_bucket", "_sum", "_count"} {
							if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
								base = b
							}
						}
						if !exported[base] {
							t.Errorf("panel %q reads %s, which no kefu code exports", p.Title, name)
						}
						charted[base] = true
					default:
						t.Errorf("panel %q reads %s: only kefu_, go_ and process_ metrics are kefu's", p.Title, name)
					}
				}
				if strings.Contains(q.Expr, "histogram_quantile") {
					if !strings.Contains(q.Expr, "_bucket") || !regexp.MustCompile(`by \(le[,)]`).MatchString(q.Expr) {
						t.Errorf("panel %q: %s: a quantile needs _bucket series summed by le", p.Title, q.Expr)
					}
				}
			}
		}
	})

	t.Run("it charts the metrics operators watch", func(t *testing.T) {
		for _, name := range dashboardMetrics {
			if !exported[name] {
				t.Errorf("%s is on the required list but no kefu code exports it", name)
			}
			if !charted[name] {
				t.Errorf("no panel charts %s", name)
			}
		}
		for _, name := range sortedKeys(exported) {
			if !charted[name] && (strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_seconds")) {
				t.Logf("%s is exported but not charted", name)
			}
		}
	})
}
