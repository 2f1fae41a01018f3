package deploy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var updatePrometheusRule = flag.Bool("update-prometheusrule", false,
	"write k8s/monitoring/prometheusrule.yaml from prometheus/alerts.yaml")

// prometheusRuleFile is the Prometheus Operator's copy of the alert rules.
var prometheusRuleFile = filepath.Join("k8s", "monitoring", "prometheusrule.yaml")

const prometheusRuleHeader = `# Generated from deploy/prometheus/alerts.yaml; do not edit. After changing
# the rules: go test ./deploy -run TestKubernetesMonitoring -update-prometheusrule
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: kefu
  namespace: kefu
  labels:
    app.kubernetes.io/name: kefu
spec:
`

// prometheusRule is the PrometheusRule whose spec is the rule file's
// groups, as they are written there (comments and all).
func prometheusRule(alerts []byte) ([]byte, error) {
	text := string(alerts)
	i := strings.Index(text, "\ngroups:\n")
	if i < 0 {
		return nil, os.ErrNotExist
	}
	var b strings.Builder
	b.WriteString(prometheusRuleHeader)
	for _, line := range strings.SplitAfter(text[i+1:], "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return []byte(b.String()), nil
}

func TestKubernetesMonitoring(t *testing.T) {
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := prometheusRule(alerts)
	if err != nil {
		t.Fatalf("%s has no top-level groups:", alertsFile)
	}
	if *updatePrometheusRule {
		if err := os.WriteFile(prometheusRuleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs := loadKubernetesDir(t, filepath.Join("k8s", "monitoring"))
	byKind := map[string]k8sObject{}
	for _, o := range objs {
		if _, dup := byKind[o.Kind]; dup {
			t.Errorf("two objects of kind %s", o.Kind)
		}
		byKind[o.Kind] = o
	}

	t.Run("the PrometheusRule holds exactly the rules of alerts.yaml", func(t *testing.T) {
		got, err := os.ReadFile(prometheusRuleFile)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from %s: run go test ./deploy -run TestKubernetesMonitoring -update-prometheusrule", prometheusRuleFile, alertsFile)
		}
		var rule struct {
			Spec promRuleFile `yaml:"spec"`
		}
		if err := byKind["PrometheusRule"].node.Decode(&rule); err != nil {
			t.Fatal(err)
		}
		rf := loadAlerts(t)
		if len(rule.Spec.Groups) == 0 || !reflect.DeepEqual(rule.Spec, rf) {
			t.Errorf("the PrometheusRule's spec does not decode to the groups of %s", alertsFile)
		}
	})

	t.Run("the PodMonitor scrapes every kefu pod's metrics port as job kefu-<role>", func(t *testing.T) {
		var pm struct {
			Spec struct {
				Selector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"selector"`
				Endpoints []struct {
					Port        string `yaml:"port"`
					Path        string `yaml:"path"`
					Interval    string `yaml:"interval"`
					Relabelings []struct {
						SourceLabels []string `yaml:"sourceLabels"`
						TargetLabel  string   `yaml:"targetLabel"`
						Regex        string   `yaml:"regex"`
						Replacement  string   `yaml:"replacement"`
					} `yaml:"relabelings"`
				} `yaml:"podMetricsEndpoints"`
			} `yaml:"spec"`
		}
		o, ok := byKind["PodMonitor"]
		if !ok {
			t.Fatal("no PodMonitor")
		}
		if err := o.node.Decode(&pm); err != nil {
			t.Fatal(err)
		}
		if len(pm.Spec.Endpoints) != 1 {
			t.Fatalf("%d endpoints, want 1", len(pm.Spec.Endpoints))
		}
		ep := pm.Spec.Endpoints[0]
		if ep.Path != "/metrics" {
			t.Errorf("path %q, want /metrics", ep.Path)
		}
		k := loadK8s(t)
		roles := 0
		for name, d := range k.deployments {
			labels := d.Spec.Template.Metadata.Labels
			for key, v := range pm.Spec.Selector.MatchLabels {
				if labels[key] != v {
					t.Errorf("%s: pod label %s=%q, the PodMonitor selects %q", name, key, labels[key], v)
				}
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				if len(c.Args) == 0 {
					continue
				}
				roles++
				if _, ok := namedPorts(c)[ep.Port]; !ok {
					t.Errorf("%s: container %s has no port %q", name, c.Name, ep.Port)
				}
				job := ""
				for _, r := range ep.Relabelings {
					if r.TargetLabel != "job" {
						continue
					}
					var values []string
					for _, s := range r.SourceLabels {
						l, ok := strings.CutPrefix(s, "__meta_kubernetes_pod_label_")
						if !ok {
							t.Fatalf("relabel source %s is not a pod label", s)
						}
						values = append(values, podLabel(labels, l))
					}
					re := r.Regex
					if re == "" {
						re = "(.*)"
					}
					job = regexp.MustCompile("^(?:"+re+")$").ReplaceAllString(strings.Join(values, ";"), strings.ReplaceAll(r.Replacement, "$1", "${1}"))
				}
				if want := "kefu-" + c.Args[0]; job != want {
					t.Errorf("%s: job %q, want %q (alerts.yaml's up rules match kefu-<role>)", name, job, want)
				}
			}
		}
		if roles == 0 {
			t.Fatal("no kefu Deployments found")
		}
	})
}

// podLabel finds a pod label by the name Prometheus gives it (every
// character outside [a-zA-Z0-9_] turned into '_').
func podLabel(labels map[string]string, sanitized string) string {
	for k, v := range labels {
		if regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(k, "_") == sanitized {
			return v
		}
	}
	return ""
}
