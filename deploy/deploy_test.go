package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/services/notifier"
)

// deployableRoles are the roles (README.md, "Roles and commands") that run as a service: `all`
// and one per container (`demo` is for newcomers, not for deployment).
var deployableRoles = map[string]bool{"all": true, "ingest": true, "notifier": true, "estimator": true, "feedback": true, "console": true}

// splitRoles run one per container in compose and Kubernetes.
var splitRoles = []string{"ingest", "notifier", "estimator", "feedback", "console"}

// pendingRoles are deployable roles that the binary's roles table
// (internal/app, unexported) does not list yet while they are being wired
// in. TestDockerfileBuild accepts them missing from `kefu help`, and says
// when an entry is no longer needed.
var pendingRoles = map[string]bool{}

// roleNeeds are the integrations a split role refuses to start without
// (internal/app's moduleNeeds of the role's required modules).
var roleNeeds = map[string][]config.Need{
	"ingest":    {config.NeedCallback},
	"notifier":  {config.NeedWeChatAPI},
	"estimator": {config.NeedWeChatAPI},
}

// knownVars are the environment variables kefu reads: the configuration
// table's, a family's members included.
func knownVars() map[string]bool {
	known := map[string]bool{}
	for _, v := range config.Vars {
		for _, name := range v.Names() {
			known[name] = true
		}
	}
	return known
}

// defaultOf is the configuration table's default of a variable.
func defaultOf(t *testing.T, name string) string {
	t.Helper()
	for _, v := range config.Vars {
		if v.Name == name {
			return v.Default
		}
	}
	t.Fatalf("%s is not in config.Vars", name)
	return ""
}

// portOf is the port of a listen address such as ":8080".
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return port
}

// checkRoleEnv loads env the way the role would at start-up and returns
// every reason it would refuse to start or misbehave.
func checkRoleEnv(role string, env map[string]string) []error {
	var errs []error
	known := knownVars()
	for _, name := range sortedKeys(env) {
		if strings.HasPrefix(name, "KEFU_") && !known[name] {
			errs = append(errs, fmt.Errorf("%s is not a variable kefu reads", name))
		}
	}
	getenv := func(name string) string { return env[name] }
	cfg, err := config.Load(getenv)
	if err != nil {
		return append(errs, fmt.Errorf("load configuration: %w", err))
	}
	if role != "all" && len(cfg.NATSURLs) == 0 {
		errs = append(errs, errors.New("KEFU_NATS_URL is unset: the role would run an embedded NATS server of its own"))
	}
	for _, need := range roleNeeds[role] {
		if err := cfg.Check(role, need); err != nil {
			errs = append(errs, err)
		}
	}
	if role == "notifier" {
		if _, err := notifier.LoadEnv(getenv); err != nil {
			errs = append(errs, fmt.Errorf("notifier settings: %w", err))
		}
	}
	if role == "feedback" && !strings.HasPrefix(cfg.FeedbackDSN.Value(), "postgres://") {
		errs = append(errs, errors.New("KEFU_FEEDBACK_DSN is not a postgres:// URL: feedback would keep its data in the container's SQLite file"))
	}
	if role == "feedback" && env["KEFU_FEEDBACK_LINK_SECRET"] == "" && env["KEFU_WECHAT_SECRET"] == "" {
		errs = append(errs, errors.New("neither KEFU_FEEDBACK_LINK_SECRET nor KEFU_WECHAT_SECRET: posts made through the feedback link (under the customer's pseudonym) would not be linked to their sessions"))
	}
	return errs
}

// secretNames hold credentials; example files give them placeholders only.
var secretNames = regexp.MustCompile(`SECRET|TOKEN|AES_KEY|PASSWORD|DSN|CREDS|SEED`)

// isPlaceholder reports whether an example value is obviously not a real
// credential: empty, or saying to change it.
func isPlaceholder(value string) bool {
	v := strings.ToLower(value)
	return value == "" || strings.Contains(v, "change-me") || strings.Contains(v, "replace-with")
}

// envEntry is one variable of an env file: set (KEY=value) or documented
// in a comment (# KEY=value).
type envEntry struct {
	name, value string
	commented   bool
	line        int
	// documented: a comment describes it (the block of variable lines it
	// belongs to starts right after a comment).
	documented bool
}

var (
	envAssign   = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	envDocument = regexp.MustCompile(`^#\s*([A-Z][A-Z0-9_]*)=(.*)$`)
)

// parseEnvFile reads a compose env file: blank lines, comments and
// KEY=value lines (optionally quoted); anything else is an error.
func parseEnvFile(path string) ([]envEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var entries []envEntry
	afterComment := false // the current block of variable lines follows a comment
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			afterComment = false
		case envDocument.MatchString(line):
			m := envDocument.FindStringSubmatch(line)
			entries = append(entries, envEntry{name: m[1], value: m[2], commented: true, line: n, documented: afterComment})
		case strings.HasPrefix(line, "#"):
			afterComment = true
		case envAssign.MatchString(line):
			m := envAssign.FindStringSubmatch(line)
			value := m[2]
			if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
				value = value[1 : len(value)-1]
			} else if i := strings.Index(value, " #"); i >= 0 {
				value = strings.TrimSpace(value[:i])
			}
			entries = append(entries, envEntry{name: m[1], value: value, line: n, documented: afterComment})
		default:
			return nil, fmt.Errorf("%s:%d: not a comment or KEY=value: %q", path, n, line)
		}
	}
	return entries, sc.Err()
}

// exampleEnv is deploy/example.env as compose sees it: the variables set.
func exampleEnv(t *testing.T) (set map[string]string, entries []envEntry) {
	t.Helper()
	entries, err := parseEnvFile("example.env")
	if err != nil {
		t.Fatal(err)
	}
	set = map[string]string{}
	for _, e := range entries {
		if !e.commented {
			set[e.name] = e.value
		}
	}
	return set, entries
}

var interpolation = regexp.MustCompile(`\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))`)

// interpolate expands compose's ${VAR}, $VAR, ${VAR:-default},
// ${VAR-default}, ${VAR:?error}, ${VAR?error} and $$ like docker compose
// does, and returns the names it referred to.
func interpolate(s string, lookup func(string) (string, bool)) (string, []string, error) {
	var refs []string
	var errs []error
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpolation.FindStringSubmatch(m)
		name, colon, op, arg := sub[1], sub[2], sub[3], sub[4]
		if name == "" {
			name = sub[5]
		}
		refs = append(refs, name)
		value, ok := lookup(name)
		missing := !ok || (colon == ":" && value == "")
		switch {
		case op == "-" && missing:
			return arg
		case op == "?" && missing:
			errs = append(errs, fmt.Errorf("%s: %s", name, arg))
			return ""
		}
		return value
	})
	return out, refs, errors.Join(errs...)
}

// decodeYAML decodes every document of a YAML file into nodes.
func decodeYAML(path string) ([]*yaml.Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		docs = append(docs, &n)
	}
}

// sortedKeys returns a map's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// repoRoot is the module root; this package is <root>/deploy.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

func TestInterpolate(t *testing.T) {
	vars := map[string]string{"SET": "value", "EMPTY": ""}
	lookup := func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "braced variable is replaced", in: "a-${SET}-b", want: "a-value-b"},
		{name: "bare variable is replaced", in: "$SET/x", want: "value/x"},
		{name: "unset variable is empty", in: "[${UNSET}]", want: "[]"},
		{name: ":- default replaces unset", in: "${UNSET:-d}", want: "d"},
		{name: ":- default replaces empty", in: "${EMPTY:-d}", want: "d"},
		{name: "- default keeps empty", in: "${EMPTY-d}", want: ""},
		{name: "default may hold a URL", in: "${UNSET:-https://api.weixin.qq.com}", want: "https://api.weixin.qq.com"},
		{name: ":? passes a set variable", in: "${SET:?need it}", want: "value"},
		{name: ":? fails on empty", in: "${EMPTY:?need it}", wantErr: true},
		{name: "? accepts empty", in: "${EMPTY?need it}", want: ""},
		{name: "? fails on unset", in: "${UNSET?need it}", wantErr: true},
		{name: "$$ is a literal dollar", in: "$${SET}", want: "${SET}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := interpolate(tt.in, lookup)
			if (err != nil) != tt.wantErr {
				t.Fatalf("interpolate(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("interpolate(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name, text string
		want       []envEntry
		wantErr    bool
	}{
		{name: "a commented block documents its variables",
			text: "# the log\nKEFU_LOG_LEVEL=info\nKEFU_LOG_FORMAT=json\n",
			want: []envEntry{{name: "KEFU_LOG_LEVEL", value: "info", line: 2, documented: true}, {name: "KEFU_LOG_FORMAT", value: "json", line: 3, documented: true}}},
		{name: "a variable after a blank line is undocumented",
			text: "# the log\n\nKEFU_LOG_LEVEL=info\n",
			want: []envEntry{{name: "KEFU_LOG_LEVEL", value: "info", line: 3}}},
		{name: "quotes are removed and a commented assignment is recorded",
			text: "# x\nA=\"b c\"\n# B=1\n",
			want: []envEntry{{name: "A", value: "b c", line: 2, documented: true}, {name: "B", value: "1", commented: true, line: 3, documented: true}}},
		{name: "a line that is no assignment is an error", text: "export A=1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.env")
			if err := os.WriteFile(path, []byte(tt.text), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := parseEnvFile(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !slices.Equal(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestExampleEnv(t *testing.T) {
	set, entries := exampleEnv(t)
	known := knownVars()

	t.Run("every variable is documented by a comment", func(t *testing.T) {
		for _, e := range entries {
			if !e.documented {
				t.Errorf("example.env:%d: %s has no comment above its block", e.line, e.name)
			}
		}
	})
	t.Run("every KEFU_ variable is one kefu reads", func(t *testing.T) {
		for _, e := range entries {
			if strings.HasPrefix(e.name, "KEFU_") && !known[e.name] {
				t.Errorf("example.env:%d: %s is not a variable kefu reads", e.line, e.name)
			}
		}
	})
	t.Run("every variable kefu reads is described", func(t *testing.T) {
		seen := map[string]bool{}
		for _, e := range entries {
			seen[e.name] = true
		}
		for _, name := range sortedKeys(known) {
			if v, _ := config.Lookup(name); !seen[name] && !v.CLI { // kefu kf's are not the server's
				t.Errorf("example.env does not mention %s", name)
			}
		}
	})
	t.Run("no variable is set twice", func(t *testing.T) {
		lines := map[string]int{}
		for _, e := range entries {
			if prev, ok := lines[e.name]; ok {
				t.Errorf("example.env:%d: %s already appears on line %d", e.line, e.name, prev)
			}
			lines[e.name] = e.line
		}
	})
	t.Run("credentials are placeholders", func(t *testing.T) {
		for _, e := range entries {
			if !e.commented && secretNames.MatchString(e.name) && !isPlaceholder(e.value) {
				t.Errorf("example.env:%d: %s=%q looks like a real credential; use a change-me/replace-with placeholder or leave it empty", e.line, e.name, e.value)
			}
		}
	})
	t.Run("every variable set is used by compose.yaml", func(t *testing.T) {
		text, err := os.ReadFile("compose.yaml")
		if err != nil {
			t.Fatal(err)
		}
		_, refs, _ := interpolate(string(text), func(string) (string, bool) { return "x", true })
		used := map[string]bool{}
		for _, r := range refs {
			used[r] = true
		}
		for _, name := range sortedKeys(set) {
			if !used[name] {
				t.Errorf("example.env sets %s, which compose.yaml never uses", name)
			}
		}
	})
}
