package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"
	"unicode"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// alertsFile is the rule file Prometheus loads (compose mounts it, the
// Kubernetes ConfigMap carries it).
var alertsFile = filepath.Join("prometheus", "alerts.yaml")

// runbookBase is where every alert's runbook_url points: a section of the
// operations runbook.
const runbookBase = "https://github.com/kefu-io/kefu/blob/main/docs/operations.md#"

// severities an alert may carry: critical pages someone, warning goes to
// a channel.
var severities = map[string]bool{"critical": true, "warning": true}

// prometheusMade are series Prometheus itself writes for every target,
// which a rule may read beside kefu's own.
var prometheusMade = map[string][]string{"up": {}}

// promRuleFile is Prometheus's rule file format (model/rulefmt). It is
// decoded strictly: a key Prometheus does not know fails as it would
// fail Prometheus.
type promRuleFile struct {
	Groups []promRuleGroup `yaml:"groups"`
}

type promRuleGroup struct {
	Name     string     `yaml:"name"`
	Interval string     `yaml:"interval"`
	Limit    int        `yaml:"limit"`
	Rules    []promRule `yaml:"rules"`
}

type promRule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func parseRuleFile(data []byte) (promRuleFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var rf promRuleFile
	if err := dec.Decode(&rf); err != nil {
		return rf, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return rf, errors.New("more than one YAML document")
	}
	return rf, nil
}

// exposition is what a kefu process exposes: every series name (the
// _bucket, _sum and _count of histograms included) with its label names.
type exposition map[string]map[string]bool

// parseExposition reads the text format of /metrics.
func parseExposition(text string) (exposition, error) {
	exp := exposition{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("not a sample: %q", line)
		}
		name := line[:end]
		if exp[name] == nil {
			exp[name] = map[string]bool{}
		}
		if line[end] == '{' {
			close := strings.LastIndexByte(line, '}')
			if close < end {
				return nil, fmt.Errorf("unterminated labels: %q", line)
			}
			for _, m := range promLabel.FindAllStringSubmatch(line[end+1:close], -1) {
				exp[name][m[1]] = true
			}
		}
	}
	return exp, sc.Err()
}

var promLabel = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)="(?:[^"\\]|\\.)*"`)

// ruleContext is what the rules are checked against.
type ruleContext struct {
	metrics exposition
	anchors map[string]bool // section anchors of docs/operations.md
}

// alertTemplateFuncs are the template functions of Prometheus
// (template.NewTemplateExpander) the annotations may use.
var alertTemplateFuncs = template.FuncMap{
	"humanize":           func(v float64) string { return fmt.Sprint(v) },
	"humanize1024":       func(v float64) string { return fmt.Sprint(v) },
	"humanizeDuration":   func(v float64) string { return fmt.Sprint(v) },
	"humanizePercentage": func(v float64) string { return fmt.Sprint(v) },
	"printf":             fmt.Sprintf,
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
}

// promQL parses as a Prometheus server without feature flags does: no
// experimental functions or syntax.
var promQL = parser.NewParser(parser.Options{})

var alertName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// checkRules returns every problem of the rule file: PromQL that does not
// parse, metrics or labels no kefu process exposes, runbook links to
// sections that do not exist, and alerts without severity, summary,
// description or for.
func checkRules(rf promRuleFile, ctx ruleContext) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(rf.Groups) == 0 {
		fail("no rule groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			fail("group %q: every group needs a name of its own", g.Name)
		}
		groups[g.Name] = true
		if g.Interval != "" {
			if _, err := model.ParseDuration(g.Interval); err != nil {
				fail("group %s: interval: %v", g.Name, err)
			}
		}
		if len(g.Rules) == 0 {
			fail("group %s has no rules", g.Name)
		}
		for _, r := range g.Rules {
			errs = append(errs, checkAlert(g.Name, r, alerts, ctx)...)
		}
	}
	return errs
}

func checkAlert(group string, r promRule, seen map[string]bool, ctx ruleContext) []error {
	var errs []error
	where := fmt.Sprintf("group %s, alert %s", group, r.Alert)
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
	switch {
	case r.Record != "":
		fail("recording rule %s: this file holds alerts only", r.Record)
	case !alertName.MatchString(r.Alert):
		fail("alert names are CamelCase (%s)", alertName)
	case seen[r.Alert]:
		fail("a second alert of that name")
	}
	seen[r.Alert] = true

	if d, err := model.ParseDuration(r.For); err != nil || d <= 0 {
		fail("for %q: every alert waits a while before it fires (%v)", r.For, err)
	}
	if r.KeepFiringFor != "" {
		if _, err := model.ParseDuration(r.KeepFiringFor); err != nil {
			fail("keep_firing_for: %v", err)
		}
	}
	if !severities[r.Labels["severity"]] {
		fail("labels.severity %q, want one of %v", r.Labels["severity"], sortedKeys(severities))
	}
	for _, key := range []string{"summary", "description", "runbook_url"} {
		if strings.TrimSpace(r.Annotations[key]) == "" {
			fail("annotations.%s is missing", key)
		}
	}
	for key, text := range r.Annotations {
		switch key {
		case "summary", "description", "runbook_url":
		default:
			fail("annotation %q: only summary, description and runbook_url are used", key)
		}
		if err := checkAlertTemplate(text); err != nil {
			fail("annotations.%s: %v", key, err)
		}
	}
	if u := r.Annotations["runbook_url"]; u != "" {
		anchor, ok := strings.CutPrefix(u, runbookBase)
		switch {
		case !ok:
			fail("runbook_url %q is not a section of the runbook (%s…)", u, runbookBase)
		case !ctx.anchors[anchor]:
			fail("runbook_url %q: docs/operations.md has no section #%s", u, anchor)
		}
	}

	expr, err := promQL.ParseExpr(r.Expr)
	if err != nil {
		fail("expr does not parse: %v", err)
		return errs
	}
	if expr.Type() != parser.ValueTypeVector {
		fail("expr is a %s; an alert needs an instant vector", expr.Type())
	}
	for _, sel := range selectors(expr) {
		name := sel.Name
		if name == "" {
			fail("%s selects no metric by name", sel)
			continue
		}
		labels, ok := ctx.metrics[name]
		if made, byPrometheus := prometheusMade[name]; !ok && byPrometheus {
			labels, ok = map[string]bool{}, true
			for _, l := range made {
				labels[l] = true
			}
		}
		if !ok {
			fail("%s is not a metric kefu exposes", name)
			continue
		}
		for _, m := range sel.LabelMatchers {
			switch m.Name {
			case model.MetricNameLabel, "job", "instance":
				continue // set by the scrape
			}
			if !labels[m.Name] {
				fail("%s has no label %q (it has %v)", name, m.Name, sortedKeys(labels))
			}
		}
	}
	return errs
}

// selectors are the vector selectors of expr, those inside range
// selectors and subqueries included.
func selectors(expr parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// checkAlertTemplate parses text as Prometheus does (text/template with
// $labels and $value defined) and renders it once.
func checkAlertTemplate(text string) error {
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
	tmpl, err := template.New("annotation").Option("missingkey=zero").Funcs(alertTemplateFuncs).Parse(defs + text)
	if err != nil {
		return err
	}
	data := struct {
		Labels, ExternalLabels map[string]string
		Value                  float64
	}{map[string]string{"consumer": "c", "instance": "i", "job": "j"}, map[string]string{}, 1}
	return tmpl.Execute(io.Discard, data)
}

// runbookAnchors are the anchors GitHub gives the headings of a Markdown
// file (outside code blocks), duplicates numbered -1, -2, ….
func runbookAnchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	anchors, seen := map[string]bool{}, map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		text, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if fenced || !strings.HasPrefix(line, "#") || !ok {
			continue
		}
		s := headingSlug(text)
		if n := seen[s]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			anchors[s] = true
		}
		seen[s]++
	}
	return anchors
}

// headingSlug is GitHub's anchor of a heading: lower case, every character
// but letters, numbers, marks, '_' and '-' dropped, spaces turned into '-'.
func headingSlug(text string) string {
	text = strings.NewReplacer("`", "", "**", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func loadAlerts(t *testing.T) promRuleFile {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := parseRuleFile(data)
	if err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return rf
}

// ruleMetrics are the metric names the rules read.
func ruleMetrics(t *testing.T, rf promRuleFile) []string {
	t.Helper()
	var names []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			expr, err := promQL.ParseExpr(r.Expr)
			if err != nil {
				continue // reported by checkRules
			}
			for _, sel := range selectors(expr) {
				if _, made := prometheusMade[sel.Name]; sel.Name != "" && !made && !slices.Contains(names, sel.Name) {
					names = append(names, sel.Name)
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// kefuExposition builds kefu, runs `kefu all` against fake WeChat and
// Tucao APIs (every integration configured, so every service registers its
// metrics) and returns what its /metrics exposes once every name in want
// is there, or after 60 s.
func kefuExposition(t *testing.T, want []string) exposition {
	t.Helper()
	const appID, secret, token = "wxalerts00000001", "alerts-app-secret", "alerts-callback-token"
	const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	fake, err := wechattest.New(wechattest.Config{AppID: appID, AppSecret: secret, Token: token, EncodingAESKey: aesKey})
	if err != nil {
		t.Fatal(err)
	}
	wechatAPI := newHTTPServer(t, fake)
	t.Cleanup(fake.Close)
	tucao := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(tucao.Close)

	kefu := filepath.Join(t.TempDir(), "kefu")
	args := []string{"build", "-o", kefu}
	if raceEnabled {
		args = append(args, "-race") // the test's own build: its packages are in the build cache
	}
	build := exec.Command("go", append(args, "./cmd/kefu")...)
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kefu: %v\n%s", err, out)
	}

	httpPort := freePort(t)
	cmd := exec.Command(kefu, "all")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEFU_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range map[string]string{
		"KEFU_HTTP_ADDR": "127.0.0.1:" + httpPort, "KEFU_NATS_LISTEN": "127.0.0.1:" + freePort(t),
		"KEFU_DATA_DIR": t.TempDir(), "KEFU_LOG_LEVEL": "warn",
		"KEFU_WECHAT_APPID": appID, "KEFU_WECHAT_SECRET": secret, "KEFU_WECHAT_TOKEN": token,
		"KEFU_WECHAT_AES_KEY": aesKey, "KEFU_WECHAT_API_BASE": wechatAPI,
		"KEFU_TUCAO_PRODUCT_ID": tucao.ProductID(), "KEFU_TUCAO_SECRET": tucao.Secret(), "KEFU_TUCAO_API_BASE": tucao.URL(),
		"KEFU_ADMIN_TOKEN": "alerts-admin-token-5d1c9e7b3a2f4e6d", "KEFU_API_TOKEN": "alerts-api-token-8b2e4d6f1a3c5e7b",
		"KEFU_PUBLIC_URL": "https://kefu.example.com", "KEFU_FEEDBACK_LINK_SECRET": "alerts-feedback-link-secret-0123456789",
	} {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})

	url := "http://127.0.0.1:" + httpPort + "/metrics"
	started := time.Now()
	seen := exposition{}
	var missing []string
	for deadline := time.Now().Add(60 * time.Second); ; {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("kefu all exited: %v\n%s", err, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		if text, err := httpGet(url); err == nil {
			exp, err := parseExposition(text)
			if err != nil {
				t.Fatalf("%s: %v", url, err)
			}
			for name, labels := range exp {
				if seen[name] == nil {
					seen[name] = map[string]bool{}
				}
				for l := range labels {
					seen[name][l] = true
				}
			}
		}
		missing = missing[:0]
		for _, name := range want {
			if seen[name] == nil {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(seen) == 0 {
		t.Fatalf("%s never answered; kefu logs:\n%s", url, logs.String())
	}
	if len(missing) > 0 {
		t.Logf("after 60 s kefu all still exposes none of %v", missing)
	} else {
		t.Logf("kefu all exposed every metric the rules read %v after it started", time.Since(started).Round(time.Millisecond))
	}
	return seen
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// checkerContext is a small, fixed context for the checker's own tests.
func checkerContext() ruleContext {
	return ruleContext{
		metrics: exposition{
			"kefu_dlq_messages_total":            {"consumer": true},
			"kefu_ingest_publish_seconds_bucket": {"le": true},
		},
		anchors: map[string]bool{"dead-letters-and-store-outages": true},
	}
}

const goodRule = `groups:
  - name: kefu
    rules:
      - alert: KefuDeadLetters
        expr: increase(kefu_dlq_messages_total{consumer!=""}[1h]) > 0
        for: 1m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.consumer }} dead-lettered {{ $value | humanize }} messages"
          description: A handler gave up on messages.
          runbook_url: https://github.com/kefu-io/kefu/blob/main/docs/operations.md#dead-letters-and-store-outages
`

// The checker rejects each kind of mistake, and accepts a good rule.
func TestRuleChecker(t *testing.T) {
	tests := []struct {
		name       string
		old, new   string // a change to goodRule
		wantErr    string // in one of the errors; empty: no error
		parseError bool
	}{
		{name: "a good rule passes"},
		{name: "a misspelt metric", old: "kefu_dlq_messages_total", new: "kefu_dlq_mesages_total",
			wantErr: "kefu_dlq_mesages_total is not a metric kefu exposes"},
		{name: "a label the metric does not have", old: `consumer!=""`, new: `role="feedback"`,
			wantErr: `kefu_dlq_messages_total has no label "role"`},
		{name: "PromQL that does not parse", old: "[1h]) > 0", new: "[1h) > 0", wantErr: "expr does not parse"},
		{name: "a range vector is no alert", old: "increase(kefu_dlq_messages_total{consumer!=\"\"}[1h]) > 0", new: "kefu_dlq_messages_total[1h]",
			wantErr: "an alert needs an instant vector"},
		{name: "a selector without a name", old: `kefu_dlq_messages_total{consumer!=""}`, new: `{consumer!=""}`,
			wantErr: "selects no metric by name"},
		{name: "no for", old: "        for: 1m\n", new: "", wantErr: "every alert waits a while"},
		{name: "no severity", old: "severity: warning", new: "team: kefu", wantErr: "labels.severity"},
		{name: "an unknown severity", old: "severity: warning", new: "severity: page", wantErr: "labels.severity \"page\""},
		{name: "no summary", old: "          summary:", new: "          note:", wantErr: "annotations.summary is missing"},
		{name: "a runbook section that does not exist", old: "#dead-letters-and-store-outages", new: "#dead-letters",
			wantErr: "docs/operations.md has no section #dead-letters"},
		{name: "a runbook elsewhere", old: "https://github.com/kefu-io/kefu/blob/main/docs/operations.md", new: "https://example.com/runbook",
			wantErr: "is not a section of the runbook"},
		{name: "a template that does not parse", old: "{{ $value | humanize }}", new: "{{ $value | humanize }",
			wantErr: "annotations.summary"},
		{name: "a template function Prometheus lacks", old: "humanize }}", new: "humanise }}", wantErr: "annotations.summary"},
		{name: "a lower-case alert name", old: "alert: KefuDeadLetters", new: "alert: kefu_dead_letters", wantErr: "CamelCase"},
		{name: "a key Prometheus does not know", old: "        for: 1m\n", new: "        for: 1m\n        severity: warning\n", parseError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := goodRule
			if tt.old != "" {
				if !strings.Contains(text, tt.old) {
					t.Fatalf("the good rule has no %q", tt.old)
				}
				text = strings.Replace(text, tt.old, tt.new, 1)
			}
			rf, err := parseRuleFile([]byte(text))
			if tt.parseError {
				if err == nil {
					t.Fatal("parsed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			errs := checkRules(rf, checkerContext())
			if tt.wantErr == "" {
				if len(errs) > 0 {
					t.Fatalf("errors: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tt.wantErr) }) {
				t.Fatalf("errors %v, want one containing %q", errs, tt.wantErr)
			}
		})
	}
	t.Run("two alerts of one name", func(t *testing.T) {
		rf, err := parseRuleFile([]byte(goodRule))
		if err != nil {
			t.Fatal(err)
		}
		rf.Groups[0].Rules = append(rf.Groups[0].Rules, rf.Groups[0].Rules[0])
		if errs := checkRules(rf, checkerContext()); len(errs) != 1 || !strings.Contains(errs[0].Error(), "a second alert") {
			t.Fatalf("errors %v, want one about the second alert", errs)
		}
	})
}

func TestParseExposition(t *testing.T) {
	exp, err := parseExposition(`# HELP kefu_a_total A.
# TYPE kefu_a_total counter
kefu_a_total{consumer="x",outcome="a{b}=\"c\""} 1
kefu_b_seconds_bucket{le="+Inf"} 3
kefu_build_info{version="v1"} 1
go_goroutines 12
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"kefu_a_total": {"consumer", "outcome"}, "kefu_b_seconds_bucket": {"le"},
		"kefu_build_info": {"version"}, "go_goroutines": nil}
	if len(exp) != len(want) {
		t.Errorf("names %v, want %v", sortedKeys(exp), sortedKeys(want))
	}
	for name, labels := range want {
		if got := sortedKeys(exp[name]); !slices.Equal(got, labels) && len(got)+len(labels) > 0 {
			t.Errorf("%s: labels %v, want %v", name, got, labels)
		}
	}
	if _, err := parseExposition("{} 1\n"); err == nil {
		t.Error("a sample without a name parsed")
	}
}

// The alerts parse with Prometheus's PromQL parser, read only metrics and
// labels that a running kefu exposes, link to sections of the runbook that
// exist, and each has a severity, a summary, a description and a for.
func TestPrometheusAlerts(t *testing.T) {
	rf := loadAlerts(t)
	anchors := runbookAnchors(t, filepath.Join("..", "docs", "operations.md"))
	if testing.Short() {
		t.Skip("runs kefu all to read its /metrics; skipped with -short")
	}
	want := ruleMetrics(t, rf)
	exp := kefuExposition(t, want)
	ctx := ruleContext{metrics: exp, anchors: anchors}
	for _, err := range checkRules(rf, ctx) {
		t.Error(err)
	}

	t.Run("the alerts cover what operators are paged for", func(t *testing.T) {
		read := map[string]bool{}
		for _, name := range want {
			read[name] = true
		}
		for _, name := range []string{
			"kefu_consumer_pending_messages", "kefu_consumer_paused", "kefu_consumer_redials_total",
			"kefu_dlq_messages_total", "kefu_ingest_callbacks_total", "kefu_ingest_rejected_total",
			"kefu_wechat_api_requests_total", "kefu_wechat_api_unknown_outcome_total",
			"kefu_tucao_polls_total", "kefu_tucao_walk_gaps", "kefu_tucao_clock_skew_seconds", "kefu_estimator_active", "kefu_queuecare_active",
			"kefu_nats_unusable_seconds", "kefu_build_info",
		} {
			if !read[name] {
				t.Errorf("no alert reads %s", name)
			}
		}
	})

	t.Run("a misspelt metric in the real file is rejected", func(t *testing.T) {
		data, err := os.ReadFile(alertsFile)
		if err != nil {
			t.Fatal(err)
		}
		bad, err := parseRuleFile(bytes.Replace(data, []byte("kefu_dlq_messages_total"), []byte("kefu_dlq_message_total"), 1))
		if err != nil {
			t.Fatal(err)
		}
		errs := checkRules(bad, ctx)
		if !slices.ContainsFunc(errs, func(e error) bool {
			return strings.Contains(e.Error(), "kefu_dlq_message_total is not a metric kefu exposes")
		}) {
			t.Fatalf("errors %v, want the misspelt kefu_dlq_message_total rejected", errs)
		}
	})
}

// newHTTPServer serves h on a loopback port until the test ends and
// returns its URL.
func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// promtool finds Prometheus's promtool: $KEFU_PROMTOOL, else on PATH
// (.ci/run unpacks Debian's).
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KEFU_PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found (set KEFU_PROMTOOL or put it on PATH; .ci/run unpacks Debian's package prometheus)")
	}
	return p
}

// withoutAnnotations is the rule file with every rule's annotations
// removed, so that promtool's unit tests state labels only.
func withoutAnnotations(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var strip func(n *yaml.Node)
	strip = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "annotations" {
					n.Content = append(n.Content[:i], n.Content[i+2:]...)
					i -= 2
				}
			}
		}
		for _, c := range n.Content {
			strip(c)
		}
	}
	strip(&doc)
	return yaml.Marshal(&doc)
}

// The rules fire when they should, with the labels they should, and not
// otherwise: promtool's unit tests (prometheus/alerts_test.yaml), one or
// more for every alert. promtool also checks the rule file with the real
// template engine and the compose Prometheus's configuration.
func TestAlertsFireWhenTheyShould(t *testing.T) {
	rf := loadAlerts(t)
	tests, err := os.ReadFile(filepath.Join("prometheus", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("prometheus/alerts_test.yaml has no test of %s", r.Alert)
			}
		}
	}
	tool := promtool(t)
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	abs, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	run(".", "check", "rules", abs)

	dir := t.TempDir()
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	stripped, err := withoutAnnotations(alerts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yaml"), stripped, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	run(dir, "test", "rules", "alerts_test.yaml")

	// The compose Prometheus's configuration, with the rule file where
	// compose mounts it replaced by its path here.
	conf, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(conf, []byte("/etc/prometheus/alerts.yaml")) {
		t.Fatal("prometheus.yml does not load /etc/prometheus/alerts.yaml")
	}
	conf = bytes.ReplaceAll(conf, []byte("/etc/prometheus/alerts.yaml"), []byte(abs))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	run(dir, "check", "config", "prometheus.yml")
}

func TestWithoutAnnotations(t *testing.T) {
	out, err := withoutAnnotations([]byte(goodRule))
	if err != nil {
		t.Fatal(err)
	}
	rf, err := parseRuleFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r := rf.Groups[0].Rules[0]
	if len(r.Annotations) != 0 || r.Alert != "KefuDeadLetters" || r.Labels["severity"] != "warning" || r.For != "1m" {
		t.Fatalf("got %+v, want the rule without its annotations", r)
	}
}
