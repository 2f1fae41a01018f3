package deploy

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// composeFile is the part of the Compose specification compose.yaml uses.
// Decoding is strict: a key outside these (a typo such as depend_on) fails
// the test instead of being ignored by it and by compose alike.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	// Extensions are the x-* blocks that hold YAML anchors.
	Extensions map[string]any `yaml:",inline"`
}

type composeService struct {
	Image           string                       `yaml:"image"`
	Build           *composeBuild                `yaml:"build"`
	Command         []string                     `yaml:"command"`
	Entrypoint      []string                     `yaml:"entrypoint"`
	Environment     map[string]string            `yaml:"environment"`
	Ports           []string                     `yaml:"ports"`
	Volumes         []string                     `yaml:"volumes"`
	DependsOn       map[string]composeDependency `yaml:"depends_on"`
	Healthcheck     *composeHealthcheck          `yaml:"healthcheck"`
	Restart         string                       `yaml:"restart"`
	Profiles        []string                     `yaml:"profiles"`
	Hostname        string                       `yaml:"hostname"`
	ReadOnly        bool                         `yaml:"read_only"`
	Tmpfs           []string                     `yaml:"tmpfs"`
	SecurityOpt     []string                     `yaml:"security_opt"`
	CapDrop         []string                     `yaml:"cap_drop"`
	StopGracePeriod string                       `yaml:"stop_grace_period"`
	StdinOpen       bool                         `yaml:"stdin_open"`
	Tty             bool                         `yaml:"tty"`
}

type composeBuild struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cf composeFile
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return cf
}

// natsNodes are the NATS server services, by name.
func natsNodes(cf composeFile) []string {
	var names []string
	for name, svc := range cf.Services {
		if strings.HasPrefix(svc.Image, "nats:") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// kefuServices are the services built from kefu's Dockerfile.
func kefuServices(cf composeFile) []string {
	var names []string
	for name, svc := range cf.Services {
		if svc.Build != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// mountSource returns the source of the volume mounted at target.
func mountSource(volumes []string, target string) (string, bool) {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0], true
		}
	}
	return "", false
}

// flagValue returns the argument after flag in args.
func flagValue(args []string, flags ...string) string {
	for i, a := range args {
		if slices.Contains(flags, a) && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func TestCompose(t *testing.T) {
	cf := loadCompose(t)
	envSet, _ := exampleEnv(t)
	lookup := func(name string) (string, bool) { v, ok := envSet[name]; return v, ok }
	expand := func(t *testing.T, s string) string {
		t.Helper()
		out, _, err := interpolate(s, lookup)
		if err != nil {
			t.Errorf("interpolate %q with example.env: %v", s, err)
		}
		return out
	}
	// environment of a kefu service as the process sees it: the image's
	// ENV, then the service's environment.
	image := loadDockerfile(t)
	kefuEnv := func(t *testing.T, svc composeService) map[string]string {
		env := image.finalEnv()
		for k, v := range svc.Environment {
			env[k] = expand(t, v)
		}
		return env
	}
	nodes := natsNodes(cf)
	roleOf := map[string]string{} // service → role
	for _, name := range kefuServices(cf) {
		if cmd := cf.Services[name].Command; len(cmd) > 0 {
			roleOf[name] = cmd[0]
		}
	}

	t.Run("extension blocks are x- blocks", func(t *testing.T) {
		for _, key := range sortedKeys(cf.Extensions) {
			if !strings.HasPrefix(key, "x-") {
				t.Errorf("top-level key %q is neither a Compose key nor an x- extension", key)
			}
		}
	})

	t.Run("example.env satisfies every required variable", func(t *testing.T) {
		data, err := os.ReadFile("compose.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := interpolate(string(data), lookup); err != nil {
			t.Errorf("docker compose --env-file example.env would refuse to start: %v", err)
		}
	})

	// clientPort is the NATS nodes' client port, and natsUsers their
	// users, from their config.
	clientPort := 0
	natsUsers := map[string]*server.User{}
	t.Run("three NATS nodes run JetStream and route to each other", func(t *testing.T) {
		if len(nodes) != 3 {
			t.Fatalf("NATS nodes %v, want 3 (a JetStream quorum that survives losing one)", nodes)
		}
		clusters := map[string]bool{}
		stores := map[string]string{}
		for _, name := range nodes {
			svc := cf.Services[name]
			confPath := flagValue(svc.Command, "--config", "-c")
			src, ok := mountSource(svc.Volumes, confPath)
			if confPath == "" || !ok {
				t.Fatalf("%s: command %q names no mounted config file", name, svc.Command)
			}
			for k, v := range svc.Environment {
				t.Setenv(k, expand(t, v))
			}
			opts, err := server.ProcessConfigFile(src)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, src, err)
			}
			if opts.ServerName != name {
				t.Errorf("%s: server_name %q, want the service name (JetStream peers are known by it)", name, opts.ServerName)
			}
			if !opts.JetStream {
				t.Errorf("%s: JetStream is not enabled", name)
			}
			store, ok := mountSource(svc.Volumes, opts.StoreDir)
			if !ok {
				t.Errorf("%s: JetStream store_dir %q is not on a volume: a restart would lose the streams", name, opts.StoreDir)
			} else if _, declared := cf.Volumes[store]; !declared {
				t.Errorf("%s: store volume %q is not a declared named volume", name, store)
			} else if other, dup := stores[store]; dup {
				t.Errorf("%s and %s share the store volume %q", name, other, store)
			}
			stores[store] = name
			clusters[opts.Cluster.Name] = true
			routed := map[string]bool{}
			for _, u := range opts.Routes {
				if u.Port() == strconv.Itoa(opts.Cluster.Port) {
					routed[u.Hostname()] = true
				}
			}
			for _, other := range nodes {
				if other != name && !routed[other] {
					t.Errorf("%s has no route to %s:%d (routes %v)", name, other, opts.Cluster.Port, opts.Routes)
				}
			}
			if svc.Healthcheck == nil || !strings.Contains(strings.Join(svc.Healthcheck.Test, " "), ":"+strconv.Itoa(opts.HTTPPort)+"/healthz") {
				t.Errorf("%s: healthcheck must ask the monitoring port's /healthz (:%d/healthz)", name, opts.HTTPPort)
			}
			if clientPort != 0 && clientPort != opts.Port {
				t.Errorf("%s: client port %d, others %d", name, opts.Port, clientPort)
			}
			clientPort = opts.Port
			for _, u := range opts.Users {
				natsUsers[u.Username] = u
			}
		}
		if len(clusters) != 1 || clusters[""] {
			t.Errorf("cluster names %v: want one non-empty name shared by every node", sortedKeys(clusters))
		}
	})

	t.Run("each split role runs in its own container", func(t *testing.T) {
		services := map[string][]string{}
		for _, name := range kefuServices(cf) {
			role, ok := roleOf[name]
			if !ok {
				t.Errorf("%s: no command, so it would run the image's default `all` with its embedded NATS", name)
				continue
			}
			if !deployableRoles[role] {
				t.Errorf("%s: command %q is not a role of kefu", name, role)
			}
			services[role] = append(services[role], name)
		}
		for _, role := range splitRoles {
			if len(services[role]) != 1 {
				t.Errorf("role %s runs in services %v, want exactly one", role, services[role])
			}
		}
	})

	t.Run("kefu services have a health check, a restart policy and wait for healthy NATS", func(t *testing.T) {
		files := image.finalFiles()
		for _, name := range kefuServices(cf) {
			svc := cf.Services[name]
			hc := svc.Healthcheck
			switch {
			case hc == nil || len(hc.Test) < 2:
				t.Errorf("%s: no healthcheck", name)
			case hc.Test[0] != "CMD":
				t.Errorf("%s: healthcheck %q: the image has no shell, use the exec form [\"CMD\", ...]", name, hc.Test)
			case !files[hc.Test[1]]:
				t.Errorf("%s: healthcheck runs %s, which the image does not contain (it has %v)", name, hc.Test[1], sortedKeys(files))
			case len(hc.Test) < 3 || hc.Test[2] != "healthcheck":
				t.Errorf("%s: healthcheck %q should run `kefu healthcheck`", name, hc.Test)
			case !slices.Contains(hc.Test, "/readyz"):
				t.Errorf("%s: healthcheck %q should ask /readyz: healthy means NATS answers", name, hc.Test)
			}
			if !slices.Contains([]string{"always", "unless-stopped", "on-failure"}, svc.Restart) {
				t.Errorf("%s: restart %q, want always, unless-stopped or on-failure", name, svc.Restart)
			}
			for _, node := range nodes {
				if svc.DependsOn[node].Condition != "service_healthy" {
					t.Errorf("%s: depends_on %s condition %q, want service_healthy", name, node, svc.DependsOn[node].Condition)
				}
			}
		}
	})

	t.Run("every role gets the settings it needs and only variables kefu reads", func(t *testing.T) {
		for _, name := range kefuServices(cf) {
			for _, err := range checkRoleEnv(roleOf[name], kefuEnv(t, cf.Services[name])) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})

	t.Run("KEFU_NATS_URL lists every node and replicas match the cluster", func(t *testing.T) {
		for _, name := range kefuServices(cf) {
			env := kefuEnv(t, cf.Services[name])
			var hosts []string
			for _, raw := range strings.Split(env["KEFU_NATS_URL"], ",") {
				u, err := url.Parse(strings.TrimSpace(raw))
				if err != nil || u.Scheme != "nats" {
					t.Errorf("%s: KEFU_NATS_URL entry %q is not a nats:// URL", name, raw)
					continue
				}
				if u.Port() != strconv.Itoa(clientPort) {
					t.Errorf("%s: KEFU_NATS_URL entry %q: port is not the nodes' client port %d", name, raw, clientPort)
				}
				hosts = append(hosts, u.Hostname())
			}
			slices.Sort(hosts)
			if !slices.Equal(hosts, nodes) {
				t.Errorf("%s: KEFU_NATS_URL hosts %v, want every node %v so it fails over", name, hosts, nodes)
			}
			if got, want := env["KEFU_NATS_REPLICAS"], strconv.Itoa(len(nodes)); got != want {
				t.Errorf("%s: KEFU_NATS_REPLICAS=%q, want %s (one replica per node)", name, got, want)
			}
		}
	})

	t.Run("kefu and nats-box connect as kefu's NATS user", func(t *testing.T) {
		if len(natsUsers) == 0 {
			t.Fatal("the NATS nodes admit anyone: nats.conf should include accounts.conf")
		}
		check := func(who, user, password string) {
			u, ok := natsUsers[user]
			switch {
			case !ok:
				t.Errorf("%s: NATS user %q is not in accounts.conf", who, user)
			case u.Account == nil || u.Account.Name != "KEFU":
				t.Errorf("%s: NATS user %q is not in kefu's account KEFU", who, user)
			case u.Password != password:
				t.Errorf("%s: the NATS password is not the one the nodes expect for %q", who, user)
			}
		}
		for _, name := range kefuServices(cf) {
			env := kefuEnv(t, cf.Services[name])
			check(name, env["KEFU_NATS_USER"], env["KEFU_NATS_PASSWORD"])
		}
		for name, svc := range cf.Services {
			if strings.HasPrefix(svc.Image, "natsio/nats-box") {
				check(name, expand(t, svc.Environment["NATS_USER"]), expand(t, svc.Environment["NATS_PASSWORD"]))
			}
		}
	})

	t.Run("feedback stores in the compose PostgreSQL and waits for it", func(t *testing.T) {
		var feedback string
		for name, role := range roleOf {
			if role == "feedback" {
				feedback = name
			}
		}
		if feedback == "" {
			t.Fatal("no feedback service")
		}
		dsn, err := url.Parse(kefuEnv(t, cf.Services[feedback])["KEFU_FEEDBACK_DSN"])
		if err != nil {
			t.Fatalf("KEFU_FEEDBACK_DSN: %v", err)
		}
		pg, ok := cf.Services[dsn.Hostname()]
		if !ok || !strings.HasPrefix(pg.Image, "postgres:") {
			t.Fatalf("KEFU_FEEDBACK_DSN host %q is not a postgres service", dsn.Hostname())
		}
		password, _ := dsn.User.Password()
		if dsn.User.Username() != expand(t, pg.Environment["POSTGRES_USER"]) || password != expand(t, pg.Environment["POSTGRES_PASSWORD"]) ||
			strings.TrimPrefix(dsn.Path, "/") != expand(t, pg.Environment["POSTGRES_DB"]) {
			t.Errorf("KEFU_FEEDBACK_DSN user, password or database differ from the %s service's POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB", dsn.Hostname())
		}
		if dsn.Port() != "5432" {
			t.Errorf("KEFU_FEEDBACK_DSN port %q, want 5432", dsn.Port())
		}
		if cf.Services[feedback].DependsOn[dsn.Hostname()].Condition != "service_healthy" {
			t.Errorf("%s does not wait for %s to be healthy", feedback, dsn.Hostname())
		}
		if pg.Healthcheck == nil || !slices.Contains(pg.Healthcheck.Test, "pg_isready") {
			t.Errorf("%s: healthcheck should run pg_isready", dsn.Hostname())
		}
	})

	t.Run("published ports reach kefu's HTTP port", func(t *testing.T) {
		for _, name := range kefuServices(cf) {
			svc := cf.Services[name]
			port := portOf(t, kefuEnv(t, svc)["KEFU_HTTP_ADDR"])
			for _, p := range svc.Ports {
				mapping := expand(t, p)
				parts := strings.Split(strings.TrimSuffix(mapping, "/tcp"), ":")
				if parts[len(parts)-1] != port {
					t.Errorf("%s: port %q does not reach KEFU_HTTP_ADDR's port %s", name, mapping, port)
				}
			}
			if roleOf[name] == "ingest" && len(svc.Ports) == 0 {
				t.Errorf("%s: ingest publishes no port, so WeChat cannot reach /wechat/callback", name)
			}
		}
	})

	t.Run("the build context is the repository root and mounted files exist", func(t *testing.T) {
		for _, name := range sortedKeys(cf.Services) {
			svc := cf.Services[name]
			if b := svc.Build; b != nil {
				if _, err := os.Stat(filepath.Join(b.Context, "go.mod")); err != nil {
					t.Errorf("%s: build context %q has no go.mod: %v", name, b.Context, err)
				}
				if _, err := os.Stat(filepath.Join(b.Context, b.Dockerfile)); err != nil {
					t.Errorf("%s: dockerfile: %v", name, err)
				}
			}
			for _, v := range svc.Volumes {
				src := strings.Split(v, ":")[0]
				switch {
				case strings.HasPrefix(src, "."):
					if _, err := os.Stat(src); err != nil {
						t.Errorf("%s: bind mount: %v", name, err)
					}
				case !strings.HasPrefix(src, "/"):
					if _, ok := cf.Volumes[src]; !ok {
						t.Errorf("%s: volume %q is not declared under volumes:", name, src)
					}
				}
			}
		}
	})
}
