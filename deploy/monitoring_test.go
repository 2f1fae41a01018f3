package deploy

import (
	"bytes"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// monitoringProfile is the compose profile of Prometheus and Grafana.
const monitoringProfile = "monitoring"

// promConfig is the part of Prometheus's configuration file
// prometheus/prometheus.yml uses, decoded strictly.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// grafanaDatasources and grafanaProviders are Grafana's provisioning
// files, decoded strictly.
type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string `yaml:"name"`
		UID       string `yaml:"uid"`
		Type      string `yaml:"type"`
		Access    string `yaml:"access"`
		URL       string `yaml:"url"`
		IsDefault bool   `yaml:"isDefault"`
		Editable  bool   `yaml:"editable"`
	} `yaml:"datasources"`
}

type grafanaProviders struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name            string `yaml:"name"`
		Folder          string `yaml:"folder"`
		Type            string `yaml:"type"`
		DisableDeletion bool   `yaml:"disableDeletion"`
		AllowUIUpdates  bool   `yaml:"allowUiUpdates"`
		Options         struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// mountOf returns the host file (relative to deploy/) mounted at target in
// the container, following a directory mounted above it.
func mountOf(volumes []string, target string) (string, bool) {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], ".") {
			continue
		}
		if parts[1] == target {
			return filepath.Clean(parts[0]), true
		}
		if rest, ok := strings.CutPrefix(target, strings.TrimSuffix(parts[1], "/")+"/"); ok {
			return filepath.Join(parts[0], rest), true
		}
	}
	return "", false
}

var pinnedImage = regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9]+\.[0-9]+\.[0-9]+$`)

func TestComposeMonitoringProfile(t *testing.T) {
	cf := loadCompose(t)
	envSet, _ := exampleEnv(t)
	expand := func(s string) string {
		out, _, err := interpolate(s, func(name string) (string, bool) { v, ok := envSet[name]; return v, ok })
		if err != nil {
			t.Errorf("interpolate %q with example.env: %v", s, err)
		}
		return out
	}
	prom, okP := cf.Services["prometheus"]
	graf, okG := cf.Services["grafana"]
	if !okP || !okG {
		t.Fatalf("compose.yaml has no prometheus (%v) or grafana (%v) service", okP, okG)
	}

	t.Run("only the monitoring profile starts them, pinned, on loopback", func(t *testing.T) {
		for name, svc := range cf.Services {
			monitoring := slices.Contains(svc.Profiles, monitoringProfile)
			switch {
			case name == "prometheus" || name == "grafana":
				if !slices.Equal(svc.Profiles, []string{monitoringProfile}) {
					t.Errorf("%s: profiles %q, want exactly [%s]: a plain `up` must not start it", name, svc.Profiles, monitoringProfile)
				}
				if !pinnedImage.MatchString(svc.Image) {
					t.Errorf("%s: image %q is not pinned to a version", name, svc.Image)
				}
				for _, p := range svc.Ports {
					if !strings.HasPrefix(expand(p), "127.0.0.1:") {
						t.Errorf("%s: port %q is published beyond loopback", name, p)
					}
				}
			case monitoring:
				t.Errorf("%s is in the %s profile, which holds Prometheus and Grafana only", name, monitoringProfile)
			}
		}
	})

	var cfg promConfig
	t.Run("Prometheus loads prometheus.yml and the alert rules", func(t *testing.T) {
		confPath := ""
		for _, arg := range prom.Command {
			if v, ok := strings.CutPrefix(arg, "--config.file="); ok {
				confPath = v
			}
		}
		src, ok := mountOf(prom.Volumes, confPath)
		if confPath == "" || !ok {
			t.Fatalf("prometheus: command %q names no mounted --config.file", prom.Command)
		}
		if src != filepath.Join("prometheus", "prometheus.yml") {
			t.Errorf("prometheus: config is %s, want prometheus/prometheus.yml", src)
		}
		decodeStrict(t, src, &cfg)
		var rules []string
		for _, f := range cfg.RuleFiles {
			host, ok := mountOf(prom.Volumes, f)
			if !ok {
				t.Errorf("rule_files %s is not mounted into the container", f)
				continue
			}
			if _, err := os.Stat(host); err != nil {
				t.Errorf("rule_files %s: %v", f, err)
			}
			rules = append(rules, host)
		}
		if !slices.Contains(rules, alertsFile) {
			t.Errorf("rule_files %v (host files %v) do not load %s", cfg.RuleFiles, rules, alertsFile)
		}
	})

	t.Run("Prometheus scrapes every kefu service on its metrics port, one job each", func(t *testing.T) {
		type target struct{ host, port string }
		jobs := map[string][]target{}
		for _, sc := range cfg.ScrapeConfigs {
			if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
				t.Errorf("job %s: metrics_path %q, kefu serves /metrics", sc.JobName, sc.MetricsPath)
			}
			if _, dup := jobs[sc.JobName]; dup {
				t.Errorf("job %s twice", sc.JobName)
			}
			jobs[sc.JobName] = []target{}
			for _, d := range sc.DNSSDConfigs {
				if d.Type != "A" {
					t.Errorf("job %s: dns_sd type %q, want A (compose's DNS answers A records)", sc.JobName, d.Type)
				}
				for _, n := range d.Names {
					jobs[sc.JobName] = append(jobs[sc.JobName], target{n, strconv.Itoa(d.Port)})
				}
			}
			for _, s := range sc.StaticConfigs {
				for _, hp := range s.Targets {
					h, p, err := net.SplitHostPort(hp)
					if err != nil {
						t.Errorf("job %s: target %q: %v", sc.JobName, hp, err)
					}
					jobs[sc.JobName] = append(jobs[sc.JobName], target{h, p})
				}
			}
		}
		image := loadDockerfile(t)
		want := map[string][]target{}
		for _, name := range kefuServices(cf) {
			svc := cf.Services[name]
			env := image.finalEnv()
			for k, v := range svc.Environment {
				env[k] = expand(v)
			}
			addr := env["KEFU_METRICS_ADDR"]
			if addr == "" {
				addr = env["KEFU_HTTP_ADDR"]
			}
			if len(svc.Command) == 0 {
				t.Errorf("%s: no role", name)
				continue
			}
			want["kefu-"+svc.Command[0]] = []target{{name, portOf(t, addr)}}
		}
		for job, targets := range want {
			got, ok := jobs[job]
			if !ok {
				t.Errorf("no scrape job %s (alerts.yaml expects kefu-<role>); jobs %v", job, sortedKeys(jobs))
				continue
			}
			if !slices.Equal(got, targets) {
				t.Errorf("job %s scrapes %v, want %v (the service and the port of KEFU_METRICS_ADDR, else KEFU_HTTP_ADDR)", job, got, targets)
			}
		}
		for job := range jobs {
			if _, ok := want[job]; !ok {
				t.Errorf("job %s scrapes no kefu service of compose.yaml", job)
			}
		}
	})

	t.Run("Grafana is provisioned with the Prometheus data source and kefu's dashboard", func(t *testing.T) {
		const provisioning = "/etc/grafana/provisioning"
		dir, ok := mountOf(graf.Volumes, provisioning)
		if !ok {
			t.Fatalf("grafana: nothing is mounted at %s", provisioning)
		}
		if graf.DependsOn["prometheus"].Condition == "" {
			t.Errorf("grafana does not depend on prometheus")
		}
		dsFiles, _ := filepath.Glob(filepath.Join(dir, "datasources", "*.yaml"))
		dashFiles, _ := filepath.Glob(filepath.Join(dir, "dashboards", "*.yaml"))
		if len(dsFiles) != 1 || len(dashFiles) != 1 {
			t.Fatalf("%s: datasources %v and dashboards %v, want one file each", dir, dsFiles, dashFiles)
		}
		var ds grafanaDatasources
		decodeStrict(t, dsFiles[0], &ds)
		promPort := ""
		for _, p := range prom.Ports {
			parts := strings.Split(expand(p), ":")
			promPort = parts[len(parts)-1]
		}
		defaults := 0
		for _, d := range ds.Datasources {
			if d.IsDefault {
				defaults++
			}
			if d.Type != "prometheus" {
				continue
			}
			u, err := url.Parse(d.URL)
			if err != nil || u.Hostname() != "prometheus" || u.Port() != promPort {
				t.Errorf("data source %s: url %q, want http://prometheus:%s (the compose service)", d.Name, d.URL, promPort)
			}
			if !d.IsDefault {
				t.Errorf("data source %s is not the default, which the dashboard's datasource variable picks", d.Name)
			}
		}
		if len(ds.Datasources) != 1 || defaults != 1 {
			t.Errorf("%d data sources, %d default; want the one Prometheus, the default", len(ds.Datasources), defaults)
		}

		var dp grafanaProviders
		decodeStrict(t, dashFiles[0], &dp)
		if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
			t.Fatalf("dashboard providers %+v, want one of type file", dp.Providers)
		}
		dashboard := path.Join(dp.Providers[0].Options.Path, "kefu-dashboard.json")
		src, ok := mountOf(graf.Volumes, dashboard)
		if !ok {
			t.Fatalf("grafana: the provider reads %s, where nothing is mounted", dp.Providers[0].Options.Path)
		}
		if src != filepath.Join("grafana", "kefu-dashboard.json") {
			t.Errorf("grafana: %s is %s, want grafana/kefu-dashboard.json", dashboard, src)
		}
		if _, err := os.Stat(src); err != nil {
			t.Error(err)
		}
		if home := graf.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" && home != dashboard {
			t.Errorf("home dashboard %s, want %s", home, dashboard)
		}
	})
}
