package deploy

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// The parts of the Kubernetes objects the tests read. Decoding is lenient
// (other fields are the API server's business), but every field read here
// is spelled as the API spells it.

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sObject struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	file       string
	node       *yaml.Node
}

type k8sSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
	// MatchExpressions are not evaluated by these tests; the manifests
	// must not use them.
	MatchExpressions any `yaml:"matchExpressions"`
}

type k8sDeployment struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		Replicas int         `yaml:"replicas"`
		Selector k8sSelector `yaml:"selector"`
		Template struct {
			Metadata k8sMeta    `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	TerminationGracePeriodSeconds *int64         `yaml:"terminationGracePeriodSeconds"`
	Containers                    []k8sContainer `yaml:"containers"`
	Volumes                       []struct {
		Name     string `yaml:"name"`
		EmptyDir any    `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *k8sKeyRef `yaml:"secretKeyRef"`
			ConfigMapKeyRef *k8sKeyRef `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sKeyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sService struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		Selector k8sSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type k8sConfigMap struct {
	Metadata k8sMeta           `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

type k8sSecret struct {
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type k8sNetworkPolicy struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		PodSelector k8sSelector     `yaml:"podSelector"`
		PolicyTypes []string        `yaml:"policyTypes"`
		Ingress     []k8sPolicyRule `yaml:"ingress"`
		Egress      []k8sPolicyRule `yaml:"egress"`
	} `yaml:"spec"`
}

// k8sPolicyRule is an ingress rule (From) or an egress rule (To).
type k8sPolicyRule struct {
	From  []k8sPolicyPeer `yaml:"from"`
	To    []k8sPolicyPeer `yaml:"to"`
	Ports []struct {
		Port     any    `yaml:"port"`
		EndPort  int    `yaml:"endPort"`
		Protocol string `yaml:"protocol"`
	} `yaml:"ports"`
}

type k8sPolicyPeer struct {
	PodSelector       *k8sSelector `yaml:"podSelector"`
	NamespaceSelector *k8sSelector `yaml:"namespaceSelector"`
	IPBlock           *struct {
		CIDR   string   `yaml:"cidr"`
		Except []string `yaml:"except"`
	} `yaml:"ipBlock"`
}

type k8sIngress struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		IngressClassName string `yaml:"ingressClassName"`
		TLS              []struct {
			Hosts      []string `yaml:"hosts"`
			SecretName string   `yaml:"secretName"`
		} `yaml:"tls"`
		Rules []struct {
			Host string `yaml:"host"`
			HTTP struct {
				Paths []k8sIngressPath `yaml:"paths"`
			} `yaml:"http"`
		} `yaml:"rules"`
		DefaultBackend any `yaml:"defaultBackend"`
	} `yaml:"spec"`
}

type k8sIngressPath struct {
	Path     string `yaml:"path"`
	PathType string `yaml:"pathType"`
	Backend  struct {
		Service struct {
			Name string `yaml:"name"`
			Port struct {
				Name   string `yaml:"name"`
				Number int    `yaml:"number"`
			} `yaml:"port"`
		} `yaml:"service"`
	} `yaml:"backend"`
}

type k8sKustomization struct {
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// secretTemplate is the file of the Secret that operators fill in
// themselves; it is not applied by kustomize.
const secretTemplate = "secret.example.yaml"

// helmValues is the file of k8s/nats/ that holds values for NATS's Helm
// chart, not Kubernetes objects.
const helmValues = "values.yaml"

// loadKubernetes parses every document of every k8s/*.yaml file.
func loadKubernetes(t *testing.T) []k8sObject {
	t.Helper()
	return loadKubernetesDir(t, "k8s")
}

// loadKubernetesDir parses every document of every dir/*.yaml file but
// Helm values.
func loadKubernetesDir(t *testing.T, dir string) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s/*.yaml: %v", dir, err)
	}
	var objs []k8sObject
	for _, f := range files {
		if filepath.Base(f) == helmValues {
			continue
		}
		docs, err := decodeYAML(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range docs {
			var o k8sObject
			if err := n.Decode(&o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			o.file, o.node = filepath.Base(f), n
			objs = append(objs, o)
		}
	}
	return objs
}

func decodeAs[T any](t *testing.T, o k8sObject) T {
	t.Helper()
	var v T
	if err := o.node.Decode(&v); err != nil {
		t.Fatalf("%s: %s %s: %v", o.file, o.Kind, o.Metadata.Name, err)
	}
	return v
}

// kubernetes is the manifests by kind.
type kubernetes struct {
	objs          []k8sObject
	kustomization k8sKustomization
	deployments   map[string]k8sDeployment
	services      map[string]k8sService
	pdbs          map[string]k8sPDB
	configMaps    map[string]map[string]string
	secrets       map[string]map[string]string // the template's values
	policies      []k8sNetworkPolicy
	ingresses     []k8sIngress
}

func loadK8s(t *testing.T) kubernetes {
	t.Helper()
	return loadK8sDir(t, "k8s")
}

// loadK8sDir is the manifests of dir (k8s, or k8s/nats for NATS's namespace).
func loadK8sDir(t *testing.T, dir string) kubernetes {
	t.Helper()
	k := kubernetes{
		objs: loadKubernetesDir(t, dir), deployments: map[string]k8sDeployment{}, services: map[string]k8sService{},
		pdbs: map[string]k8sPDB{}, configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{},
	}
	for _, o := range k.objs {
		switch o.Kind {
		case "Kustomization":
			k.kustomization = decodeAs[k8sKustomization](t, o)
		case "Deployment":
			k.deployments[o.Metadata.Name] = decodeAs[k8sDeployment](t, o)
		case "Service":
			k.services[o.Metadata.Name] = decodeAs[k8sService](t, o)
		case "PodDisruptionBudget":
			k.pdbs[o.Metadata.Name] = decodeAs[k8sPDB](t, o)
		case "NetworkPolicy":
			k.policies = append(k.policies, decodeAs[k8sNetworkPolicy](t, o))
		case "Ingress":
			k.ingresses = append(k.ingresses, decodeAs[k8sIngress](t, o))
		case "ConfigMap":
			k.configMaps[o.Metadata.Name] = decodeAs[k8sConfigMap](t, o).Data
		case "Secret":
			s := decodeAs[k8sSecret](t, o)
			if len(s.Data) > 0 {
				t.Errorf("%s: Secret %s uses data:; the template uses stringData: so placeholders stay readable", o.file, o.Metadata.Name)
			}
			k.secrets[o.Metadata.Name] = s.StringData
		}
	}
	return k
}

// role is the role a Deployment runs: its container's first argument.
func (d k8sDeployment) role() string {
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 && len(cs[0].Args) > 0 {
		return cs[0].Args[0]
	}
	return ""
}

// env is the environment of a container as the pod would get it: the
// image's ENV, envFrom, then env, with secrets taken from the template.
func (k kubernetes) env(t *testing.T, image map[string]string, c k8sContainer) map[string]string {
	env := maps.Clone(image)
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := k.configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("envFrom ConfigMap %q is not in k8s/", from.ConfigMapRef.Name)
			}
			maps.Copy(env, data)
		case from.SecretRef != nil:
			data, ok := k.secrets[from.SecretRef.Name]
			if !ok {
				t.Errorf("envFrom Secret %q is not in k8s/", from.SecretRef.Name)
			}
			maps.Copy(env, data)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			value, ok := k.secrets[ref.Name][ref.Key]
			if !ok && !ref.Optional {
				t.Errorf("%s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			if ok {
				env[e.Name] = value
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			value, ok := k.configMaps[ref.Name][ref.Key]
			if !ok && !ref.Optional {
				t.Errorf("%s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			if ok {
				env[e.Name] = value
			}
		}
	}
	return env
}

// selects reports whether selector picks pods labelled labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetes(t *testing.T) {
	k := loadK8s(t)
	imageEnv := loadDockerfile(t).finalEnv()

	t.Run("every manifest names its kind, name and namespace", func(t *testing.T) {
		for _, o := range k.objs {
			if o.APIVersion == "" || o.Kind == "" {
				t.Errorf("%s: a document without apiVersion or kind", o.file)
				continue
			}
			if o.Kind == "Kustomization" {
				continue
			}
			if o.Metadata.Name == "" {
				t.Errorf("%s: %s without a name", o.file, o.Kind)
			}
			if o.Kind != "Namespace" && o.Metadata.Namespace != k.kustomization.Namespace {
				t.Errorf("%s: %s %s in namespace %q, want %q", o.file, o.Kind, o.Metadata.Name, o.Metadata.Namespace, k.kustomization.Namespace)
			}
		}
	})

	t.Run("kustomization applies every manifest but the Secret template", func(t *testing.T) {
		var want []string
		for _, o := range k.objs {
			if o.Kind != "Kustomization" && o.file != secretTemplate && !slices.Contains(want, o.file) {
				want = append(want, o.file)
			}
		}
		got := slices.Clone(k.kustomization.Resources)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("kustomization resources %v, want %v", got, want)
		}
		if slices.Contains(got, secretTemplate) {
			t.Errorf("kustomization applies %s: its placeholders would overwrite the real Secret", secretTemplate)
		}
		if _, ok := k.secrets["kefu-secrets"]; !ok {
			t.Errorf("%s does not define the kefu-secrets Secret", secretTemplate)
		}
	})

	t.Run("one Deployment per split role, running that role of the kefu image", func(t *testing.T) {
		byRole := map[string][]string{}
		images := map[string]bool{}
		for _, img := range k.kustomization.Images {
			images[img.Name] = img.NewName != ""
		}
		for _, name := range sortedKeys(k.deployments) {
			d := k.deployments[name]
			cs := d.Spec.Template.Spec.Containers
			if len(cs) != 1 {
				t.Errorf("%s: %d containers, want 1", name, len(cs))
				continue
			}
			if !deployableRoles[d.role()] || len(cs[0].Command) > 0 {
				t.Errorf("%s: args %q, command %q: want args [<role>] and the image's entrypoint", name, cs[0].Args, cs[0].Command)
			}
			if !images[cs[0].Image] {
				t.Errorf("%s: image %q is not set by the kustomization's images:", name, cs[0].Image)
			}
			if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
				t.Errorf("%s: selector %v does not select its own pods %v", name, d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
			}
			byRole[d.role()] = append(byRole[d.role()], name)
		}
		for _, role := range splitRoles {
			if len(byRole[role]) != 1 {
				t.Errorf("role %s runs in Deployments %v, want exactly one", role, byRole[role])
			}
		}
	})

	t.Run("pods run as non-root with a read-only root filesystem and no privileges", func(t *testing.T) {
		isTrue := func(b *bool) bool { return b != nil && *b }
		for _, name := range sortedKeys(k.deployments) {
			pod := k.deployments[name].Spec.Template.Spec
			if !isTrue(pod.SecurityContext.RunAsNonRoot) || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 {
				t.Errorf("%s: pod securityContext must set runAsNonRoot and a non-zero runAsUser", name)
			}
			if pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
				t.Errorf("%s: seccompProfile %q, want RuntimeDefault", name, pod.SecurityContext.SeccompProfile.Type)
			}
			for _, c := range pod.Containers {
				sc := c.SecurityContext
				if !isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					!slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("%s/%s: container securityContext must set readOnlyRootFilesystem, allowPrivilegeEscalation: false and drop ALL", name, c.Name)
				}
			}
		}
	})

	t.Run("probes ask /readyz and /healthz on the port kefu listens on", func(t *testing.T) {
		for _, name := range sortedKeys(k.deployments) {
			for _, c := range k.deployments[name].Spec.Template.Spec.Containers {
				port := portOf(t, k.env(t, imageEnv, c)["KEFU_HTTP_ADDR"])
				ports := map[string]string{}
				for _, p := range c.Ports {
					ports[p.Name] = strconv.Itoa(p.ContainerPort)
					ports[strconv.Itoa(p.ContainerPort)] = strconv.Itoa(p.ContainerPort)
				}
				for _, pr := range []struct {
					kind, path string
					probe      *k8sProbe
				}{
					{"readinessProbe", "/readyz", c.ReadinessProbe},
					{"livenessProbe", "/healthz", c.LivenessProbe},
					{"startupProbe", "/healthz", c.StartupProbe},
				} {
					if pr.probe == nil || pr.probe.HTTPGet == nil {
						t.Errorf("%s: no HTTP %s", name, pr.kind)
						continue
					}
					if pr.probe.HTTPGet.Path != pr.path {
						t.Errorf("%s: %s asks %s, want %s", name, pr.kind, pr.probe.HTTPGet.Path, pr.path)
					}
					if got := ports[fmt.Sprint(pr.probe.HTTPGet.Port)]; got != port {
						t.Errorf("%s: %s port %v is container port %q, but KEFU_HTTP_ADDR listens on %s", name, pr.kind, pr.probe.HTTPGet.Port, got, port)
					}
				}
			}
		}
	})

	t.Run("containers request CPU and memory and limit memory", func(t *testing.T) {
		for _, name := range sortedKeys(k.deployments) {
			for _, c := range k.deployments[name].Spec.Template.Spec.Containers {
				r := c.Resources
				if r.Requests["cpu"] == "" || r.Requests["memory"] == "" || r.Limits["memory"] == "" {
					t.Errorf("%s: resources %+v, want cpu and memory requests and a memory limit", name, r)
				}
			}
		}
	})

	t.Run("every role gets the settings it needs and only variables kefu reads", func(t *testing.T) {
		for _, name := range sortedKeys(k.deployments) {
			d := k.deployments[name]
			for _, c := range d.Spec.Template.Spec.Containers {
				env := k.env(t, imageEnv, c)
				for _, err := range checkRoleEnv(d.role(), env) {
					t.Errorf("%s: %v", name, err)
				}
				if u, err := url.Parse(strings.Split(env["KEFU_NATS_URL"], ",")[0]); err != nil || u.Scheme != "nats" {
					t.Errorf("%s: KEFU_NATS_URL %q is not a nats:// URL", name, env["KEFU_NATS_URL"])
				}
				if env["KEFU_NATS_REPLICAS"] != "3" {
					t.Errorf("%s: KEFU_NATS_REPLICAS=%q, want 3 for the three-node cluster of README.md", name, env["KEFU_NATS_REPLICAS"])
				}
			}
		}
	})

	t.Run("secrets hold placeholders and are not in the ConfigMap", func(t *testing.T) {
		for name, data := range k.secrets {
			for key, value := range data {
				if !isPlaceholder(value) {
					t.Errorf("Secret %s: %s=%q looks like a real credential", name, key, value)
				}
			}
		}
		for name, data := range k.configMaps {
			for key := range data {
				if secretNames.MatchString(key) {
					t.Errorf("ConfigMap %s holds %s, which belongs in the Secret", name, key)
				}
			}
		}
	})

	t.Run("KEFU_DATA_DIR and /tmp are writable volumes", func(t *testing.T) {
		for _, name := range sortedKeys(k.deployments) {
			pod := k.deployments[name].Spec.Template.Spec
			volumes := map[string]bool{}
			for _, v := range pod.Volumes {
				volumes[v.Name] = true
			}
			for _, c := range pod.Containers {
				mounted := map[string]bool{}
				for _, m := range c.VolumeMounts {
					if !volumes[m.Name] {
						t.Errorf("%s: mount of undeclared volume %q", name, m.Name)
					}
					mounted[m.MountPath] = true
				}
				for _, dir := range []string{k.env(t, imageEnv, c)["KEFU_DATA_DIR"], "/tmp"} {
					if !mounted[dir] {
						t.Errorf("%s: %s is not a volume, and the root filesystem is read-only", name, dir)
					}
				}
			}
		}
	})

	t.Run("Services and disruption budgets select one Deployment on a named port", func(t *testing.T) {
		selected := func(selector map[string]string) []k8sDeployment {
			var out []k8sDeployment
			for _, name := range sortedKeys(k.deployments) {
				if selects(selector, k.deployments[name].Spec.Template.Metadata.Labels) {
					out = append(out, k.deployments[name])
				}
			}
			return out
		}
		roles := map[string]bool{}
		for _, name := range sortedKeys(k.services) {
			svc := k.services[name]
			ds := selected(svc.Spec.Selector)
			if len(ds) != 1 {
				t.Errorf("Service %s selects %d Deployments, want 1", name, len(ds))
				continue
			}
			roles[ds[0].role()] = true
			for _, p := range svc.Spec.Ports {
				found := false
				for _, cp := range ds[0].Spec.Template.Spec.Containers[0].Ports {
					found = found || fmt.Sprint(p.TargetPort) == cp.Name || fmt.Sprint(p.TargetPort) == strconv.Itoa(cp.ContainerPort)
				}
				if !found {
					t.Errorf("Service %s: targetPort %v is no port of %s", name, p.TargetPort, ds[0].Metadata.Name)
				}
			}
		}
		if !roles["ingest"] {
			t.Error("no Service in front of ingest: WeChat could not reach /wechat/callback")
		}
		for _, name := range sortedKeys(k.pdbs) {
			if n := len(selected(k.pdbs[name].Spec.Selector.MatchLabels)); n != 1 {
				t.Errorf("PodDisruptionBudget %s selects %d Deployments, want 1", name, n)
			}
		}
	})
}

// deployedRoles are the roles the deployment files run, with where.
func deployedRoles(t *testing.T) map[string][]string {
	t.Helper()
	roles := map[string][]string{}
	cf := loadCompose(t)
	for _, name := range kefuServices(cf) {
		if cmd := cf.Services[name].Command; len(cmd) > 0 {
			roles[cmd[0]] = append(roles[cmd[0]], "compose service "+name)
		}
	}
	k := loadK8s(t)
	for _, name := range sortedKeys(k.deployments) {
		role := k.deployments[name].role()
		roles[role] = append(roles[role], "Deployment "+name)
	}
	if cmd, err := execForm(lastArgs(loadDockerfile(t).final(), "CMD")); err == nil && len(cmd) > 0 {
		roles[cmd[0]] = append(roles[cmd[0]], "Dockerfile CMD")
	}
	return roles
}

// The namespaces the NetworkPolicies name (k8s/networkpolicy.yaml,
// k8s/nats/networkpolicy.yaml, k8s/README.md): the Ingress controller's,
// Prometheus's and NATS's, and the label that lets another team's
// namespace reach NATS.
const (
	ingressControllerNS = "ingress-nginx"
	monitoringNS        = "monitoring"
	natsNS              = "nats"
	eventsNSLabel       = "kefu/nats-events"
)

// natsServerLabels are the labels the official Helm chart (release "nats")
// gives the NATS server pods.
var natsServerLabels = map[string]string{
	"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats",
}

// netPeer is one end of a connection as NetworkPolicies see it: a pod (its
// namespace's labels and its own) or an address outside the cluster.
type netPeer struct {
	name      string
	namespace string // "" for an address outside the cluster
	nsLabels  map[string]string
	labels    map[string]string
	ip        netip.Addr
}

func podPeer(name, namespace string, nsLabels, labels map[string]string) netPeer {
	ns := map[string]string{"kubernetes.io/metadata.name": namespace}
	maps.Copy(ns, nsLabels)
	return netPeer{name: name, namespace: namespace, nsLabels: ns, labels: labels}
}

// outside is an address on the internet.
var outside = netPeer{name: "an address on the internet", ip: netip.MustParseAddr("203.0.113.7")}

// matchesSelector: unlike selects, a present but empty selector selects
// everything, as in a NetworkPolicy.
func matchesSelector(sel *k8sSelector, labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// peerMatches reports whether peer pp of a policy in namespace policyNS
// stands for p.
func peerMatches(policyNS string, pp k8sPolicyPeer, p netPeer) bool {
	if pp.IPBlock != nil {
		// Pods are not addressed by IP: their addresses come and go.
		if p.namespace != "" {
			return false
		}
		if !netip.MustParsePrefix(pp.IPBlock.CIDR).Contains(p.ip) {
			return false
		}
		for _, e := range pp.IPBlock.Except {
			if netip.MustParsePrefix(e).Contains(p.ip) {
				return false
			}
		}
		return true
	}
	if p.namespace == "" {
		return false
	}
	if pp.NamespaceSelector != nil {
		if !matchesSelector(pp.NamespaceSelector, p.nsLabels) {
			return false
		}
	} else if p.namespace != policyNS {
		return false
	}
	return pp.PodSelector == nil || matchesSelector(pp.PodSelector, p.labels)
}

// portMatches reports whether rule covers port/proto; named ports are the
// named container ports of the pod the port belongs to.
func portMatches(rule k8sPolicyRule, port int, proto string, named map[string]int) bool {
	if len(rule.Ports) == 0 {
		return true
	}
	for _, rp := range rule.Ports {
		if p := cmp.Or(rp.Protocol, "TCP"); p != proto {
			continue
		}
		if rp.Port == nil {
			return true
		}
		n, ok := rp.Port.(int)
		if !ok {
			if n, ok = named[fmt.Sprint(rp.Port)]; !ok {
				continue
			}
		}
		if port == n || (rp.EndPort > n && port >= n && port <= rp.EndPort) {
			return true
		}
	}
	return false
}

// allows evaluates the NetworkPolicies for one direction ("Ingress" or
// "Egress") of a pod in namespace ns with labels and named ports: whether
// any policy isolates it that way, and whether one admits other on port.
func (k kubernetes) allows(dir, ns string, labels map[string]string, named map[string]int, other netPeer, port int, proto string) (isolated, allowed bool) {
	for _, pol := range k.policies {
		if pol.Metadata.Namespace != ns || !matchesSelector(&pol.Spec.PodSelector, labels) {
			continue
		}
		types := pol.Spec.PolicyTypes
		if len(types) == 0 {
			types = []string{"Ingress"}
			if len(pol.Spec.Egress) > 0 {
				types = append(types, "Egress")
			}
		}
		if !slices.Contains(types, dir) {
			continue
		}
		isolated = true
		rules := pol.Spec.Ingress
		if dir == "Egress" {
			rules = pol.Spec.Egress
		}
		for _, r := range rules {
			peers := r.From
			if dir == "Egress" {
				peers, named = r.To, nil // egress names the destination's ports
			}
			if !portMatches(r, port, proto, named) {
				continue
			}
			if len(peers) == 0 {
				allowed = true
			}
			for _, pp := range peers {
				allowed = allowed || peerMatches(pol.Metadata.Namespace, pp, other)
			}
		}
	}
	return isolated, allowed
}

// namedPorts are a container's ports by name.
func namedPorts(c k8sContainer) map[string]int {
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	return ports
}

// ingressPathMatches is Kubernetes' matching of a request path against an
// Ingress path (Exact, or Prefix element by element).
func ingressPathMatches(p k8sIngressPath, path string) bool {
	switch p.PathType {
	case "Exact":
		return path == p.Path
	case "Prefix":
		prefix := strings.TrimSuffix(p.Path, "/")
		return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return false
}

func TestKubernetesNetwork(t *testing.T) {
	k := loadK8s(t)
	imageEnv := loadDockerfile(t).finalEnv()
	ns := k.kustomization.Namespace
	nk := loadK8sDir(t, filepath.Join("k8s", "nats"))

	for _, pol := range append(slices.Clone(k.policies), nk.policies...) {
		selectors := []*k8sSelector{&pol.Spec.PodSelector}
		for _, r := range append(slices.Clone(pol.Spec.Ingress), pol.Spec.Egress...) {
			for _, pp := range append(slices.Clone(r.From), r.To...) {
				selectors = append(selectors, pp.PodSelector, pp.NamespaceSelector)
			}
		}
		for _, sel := range selectors {
			if sel != nil && sel.MatchExpressions != nil {
				t.Errorf("NetworkPolicy %s uses matchExpressions, which these tests do not evaluate", pol.Metadata.Name)
			}
		}
	}

	ingressController := podPeer("the Ingress controller", ingressControllerNS, nil, map[string]string{"app.kubernetes.io/name": "ingress-nginx"})
	monitoring := podPeer("Prometheus", monitoringNS, nil, map[string]string{"app.kubernetes.io/name": "prometheus"})
	natsServer := podPeer("a NATS server", natsNS, nil, natsServerLabels)
	otherTeam := podPeer("another team's pod", "analytics", map[string]string{eventsNSLabel: "true"}, map[string]string{"app": "reports"})
	strangers := []netPeer{
		outside, natsServer, otherTeam,
		podPeer("a pod of another namespace", "default", nil, map[string]string{"app": "curl"}),
		podPeer("another pod of kefu's namespace", ns, nil, map[string]string{"app": "debug"}),
	}
	kefuPods := map[string]netPeer{}
	for _, name := range sortedKeys(k.deployments) {
		d := k.deployments[name]
		kefuPods[d.role()] = podPeer("kefu's "+d.role(), ns, nil, d.Spec.Template.Metadata.Labels)
	}

	t.Run("every pod is shut in and out unless a policy says otherwise", func(t *testing.T) {
		found := false
		for _, pol := range k.policies {
			found = found || (len(pol.Spec.PodSelector.MatchLabels) == 0 && len(pol.Spec.Ingress) == 0 && len(pol.Spec.Egress) == 0 &&
				slices.Contains(pol.Spec.PolicyTypes, "Ingress") && slices.Contains(pol.Spec.PolicyTypes, "Egress"))
		}
		if !found {
			t.Error("no default-deny NetworkPolicy (podSelector: {}, policyTypes Ingress and Egress, no rules)")
		}
	})

	t.Run("each port of each role admits exactly its callers", func(t *testing.T) {
		for _, name := range sortedKeys(k.deployments) {
			d := k.deployments[name]
			role, labels := d.role(), d.Spec.Template.Metadata.Labels
			c := d.Spec.Template.Spec.Containers[0]
			env := k.env(t, imageEnv, c)
			ports := namedPorts(c)
			if env["KEFU_METRICS_ADDR"] == "" {
				t.Errorf("%s: KEFU_METRICS_ADDR unset: /metrics would share the port the Ingress controller reaches", name)
				continue
			}
			if got, want := strconv.Itoa(ports["http"]), portOf(t, env["KEFU_HTTP_ADDR"]); got != want {
				t.Errorf("%s: container port http is %s, KEFU_HTTP_ADDR listens on %s", name, got, want)
			}
			metricsPort := portOf(t, env["KEFU_METRICS_ADDR"])
			if got := strconv.Itoa(ports["metrics"]); got != metricsPort {
				t.Errorf("%s: container port metrics is %s, KEFU_METRICS_ADDR listens on %s", name, got, metricsPort)
			}
			if got := d.Spec.Template.Metadata.Annotations["prometheus.io/port"]; got != metricsPort {
				t.Errorf("%s: prometheus.io/port %q, want the metrics port %s", name, got, metricsPort)
			}
			public := role == "ingest" || role == "notifier"
			peers := append(slices.Clone(strangers), ingressController, monitoring)
			for _, r := range sortedKeys(kefuPods) {
				peers = append(peers, kefuPods[r])
			}
			for _, p := range c.Ports {
				for _, peer := range peers {
					want := (p.Name == "http" && public && peer.name == ingressController.name) ||
						(p.Name == "metrics" && peer.name == monitoring.name)
					isolated, got := k.allows("Ingress", ns, labels, ports, peer, p.ContainerPort, "TCP")
					if !isolated {
						t.Fatalf("%s: no NetworkPolicy restricts what reaches it", name)
					}
					if got != want {
						t.Errorf("%s: port %s (%d) admits %s: %v, want %v", name, p.Name, p.ContainerPort, peer.name, got, want)
					}
				}
			}
		}
	})

	t.Run("each role reaches DNS, NATS and HTTPS, and only feedback and the console PostgreSQL", func(t *testing.T) {
		dns := podPeer("DNS", "kube-system", nil, map[string]string{"k8s-app": "kube-dns"})
		dsn, err := url.Parse(k.secrets["kefu-secrets"]["KEFU_FEEDBACK_DSN"])
		if err != nil {
			t.Fatal(err)
		}
		pgPort, _ := strconv.Atoi(cmp.Or(dsn.Port(), "5432"))
		for _, name := range sortedKeys(k.deployments) {
			d := k.deployments[name]
			env := k.env(t, imageEnv, d.Spec.Template.Spec.Containers[0])
			natsURL, err := url.Parse(strings.Split(env["KEFU_NATS_URL"], ",")[0])
			if err != nil {
				t.Fatal(err)
			}
			if host := natsURL.Hostname(); !strings.HasSuffix(host, "."+natsNS+".svc.cluster.local") && !strings.HasSuffix(host, "."+natsNS) {
				t.Errorf("%s: KEFU_NATS_URL %s is not in namespace %s, which the egress policy admits", name, natsURL, natsNS)
			}
			natsPort, _ := strconv.Atoi(cmp.Or(natsURL.Port(), "4222"))
			for _, c := range []struct {
				what  string
				peer  netPeer
				port  int
				proto string
				want  bool
			}{
				{"DNS", dns, 53, "UDP", true},
				{"NATS", natsServer, natsPort, "TCP", true},
				{"the WeChat and Tucao APIs", outside, 443, "TCP", true},
				{"PostgreSQL", outside, pgPort, "TCP", d.role() == "feedback" || d.role() == "console"},
				{"SSH on the internet", outside, 22, "TCP", false},
				{"NATS's cluster port", natsServer, 6222, "TCP", false},
				{"a pod of another namespace", strangers[3], 8080, "TCP", false},
			} {
				isolated, got := k.allows("Egress", ns, d.Spec.Template.Metadata.Labels, nil, c.peer, c.port, c.proto)
				if !isolated {
					t.Fatalf("%s: no NetworkPolicy restricts where it connects", name)
				}
				if got != c.want {
					t.Errorf("%s: reaches %s (%s %d): %v, want %v", name, c.what, c.proto, c.port, got, c.want)
				}
			}
		}
	})

	t.Run("the Ingress routes the public paths and nothing else", func(t *testing.T) {
		if len(k.ingresses) != 1 {
			t.Fatalf("%d Ingresses, want 1", len(k.ingresses))
		}
		ing := k.ingresses[0]
		if ing.Spec.DefaultBackend != nil {
			t.Error("defaultBackend routes every path")
		}
		if ing.Spec.IngressClassName == "" {
			t.Error("no ingressClassName")
		}
		tlsHosts := map[string]bool{}
		for _, tls := range ing.Spec.TLS {
			for _, h := range tls.Hosts {
				tlsHosts[h] = tls.SecretName != ""
			}
		}
		// route is the role a request path reaches ("" for none).
		route := func(t *testing.T, path string) string {
			roles := map[string]bool{}
			for _, rule := range ing.Spec.Rules {
				for _, p := range rule.HTTP.Paths {
					if !ingressPathMatches(p, path) {
						continue
					}
					svc, ok := k.services[p.Backend.Service.Name]
					if !ok {
						t.Errorf("%s routes to Service %q, which is not in k8s/", p.Path, p.Backend.Service.Name)
						continue
					}
					for _, dn := range sortedKeys(k.deployments) {
						d := k.deployments[dn]
						if !selects(svc.Spec.Selector, d.Spec.Template.Metadata.Labels) {
							continue
						}
						for _, sp := range svc.Spec.Ports {
							if sp.Name == p.Backend.Service.Port.Name || sp.Port == p.Backend.Service.Port.Number {
								if target := fmt.Sprint(sp.TargetPort); target != "http" && target != strconv.Itoa(namedPorts(d.Spec.Template.Spec.Containers[0])["http"]) {
									t.Errorf("%s routes to %s's port %s, not its http port", p.Path, dn, target)
								}
							}
						}
						roles[d.role()] = true
					}
				}
			}
			if len(roles) > 1 {
				t.Errorf("%s reaches several roles %v", path, sortedKeys(roles))
			}
			for r := range roles {
				return r
			}
			return ""
		}
		for _, rule := range ing.Spec.Rules {
			if !tlsHosts[rule.Host] {
				t.Errorf("host %q has no TLS certificate", rule.Host)
			}
			for _, p := range rule.HTTP.Paths {
				if p.PathType != "Exact" && p.PathType != "Prefix" {
					t.Errorf("%s: pathType %q; Exact or Prefix mean the same to every controller", p.Path, p.PathType)
				}
			}
		}
		for path, want := range map[string]string{
			"/wechat/callback":      "ingest",
			"/tucao/webhook":        "ingest",
			"/tucao/webhook/s3cret": "ingest", // KEFU_TUCAO_WEBHOOK_SECRET
			"/feedback/tok3n":       "notifier",
			"/feedback/avatar.png":  "notifier",
			// Never from outside.
			"/":                          "",
			"/api/kf/queue":              "",
			"/api/kf/customers/o-1":      "",
			"/api/feedback/posts":        "",
			"/api/kf/accounts":           "",
			"/metrics":                   "",
			"/healthz":                   "",
			"/readyz":                    "",
			"/wechat/callback/../../api": "",
			"/wechat/callbacks":          "",
			"/feedbackx":                 "",
		} {
			if got := route(t, path); got != want {
				t.Errorf("%s reaches %q, want %q", path, got, want)
			}
		}
	})

	t.Run("NATS admits kefu, labelled namespaces and nats-box", func(t *testing.T) {
		if nk.kustomization.Namespace != natsNS {
			t.Errorf("k8s/nats/kustomization.yaml: namespace %q, want %q", nk.kustomization.Namespace, natsNS)
		}
		var want []string
		for _, o := range nk.objs {
			if o.Kind != "Kustomization" && o.file != secretTemplate && !slices.Contains(want, o.file) {
				want = append(want, o.file)
			}
			if o.Kind != "Kustomization" && o.Metadata.Namespace != natsNS {
				t.Errorf("k8s/nats/%s: %s %s in namespace %q, want %q", o.file, o.Kind, o.Metadata.Name, o.Metadata.Namespace, natsNS)
			}
		}
		got := slices.Sorted(slices.Values(nk.kustomization.Resources))
		if slices.Sort(want); !slices.Equal(got, want) {
			t.Errorf("k8s/nats kustomization resources %v, want %v", got, want)
		}
		natsBox := podPeer("nats-box", natsNS, nil, map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats-box"})
		ports := map[string]int{"nats": 4222, "cluster": 6222, "monitor": 8222}
		peers := []netPeer{outside, otherTeam, natsServer, natsBox, monitoring, ingressController,
			podPeer("a pod of another namespace", "default", nil, map[string]string{"app": "curl"}),
			podPeer("another pod of kefu's namespace", ns, nil, map[string]string{"app": "debug"})}
		for _, r := range sortedKeys(kefuPods) {
			peers = append(peers, kefuPods[r])
		}
		for _, peer := range peers {
			for _, pn := range sortedKeys(ports) {
				var want bool
				switch pn {
				case "nats":
					want = peer.name == otherTeam.name || peer.name == natsBox.name || strings.HasPrefix(peer.name, "kefu's ")
				case "cluster":
					want = peer.name == natsServer.name
				case "monitor":
					want = peer.name == monitoring.name
				}
				isolated, got := nk.allows("Ingress", natsNS, natsServerLabels, ports, peer, ports[pn], "TCP")
				if !isolated {
					t.Fatal("no NetworkPolicy selects the NATS servers")
				}
				if got != want {
					t.Errorf("NATS port %s (%d) admits %s: %v, want %v", pn, ports[pn], peer.name, got, want)
				}
			}
		}
	})

	t.Run("NATS's Helm values load the account layout with the Secret's passwords", func(t *testing.T) {
		var values struct {
			Config struct {
				Merge map[string]any `yaml:"merge"`
			} `yaml:"config"`
			Container struct {
				Env map[string]struct {
					ValueFrom struct {
						SecretKeyRef k8sKeyRef `yaml:"secretKeyRef"`
					} `yaml:"valueFrom"`
				} `yaml:"env"`
			} `yaml:"container"`
		}
		docs, err := decodeYAML(filepath.Join("k8s", "nats", helmValues))
		if err != nil || len(docs) != 1 {
			t.Fatalf("k8s/nats/%s: %v", helmValues, err)
		}
		if err := docs[0].Decode(&values); err != nil {
			t.Fatal(err)
		}
		if got := values.Config.Merge["$include"]; got != "./"+filepath.Base(accountsConf) {
			t.Errorf("config.merge.$include %v, want ./%s", got, filepath.Base(accountsConf))
		}
		conf, err := os.ReadFile(accountsConf)
		if err != nil {
			t.Fatal(err)
		}
		users := nk.secrets["nats-users"]
		for _, m := range regexp.MustCompile(`user: \w+, password: \$(\w+)`).FindAllStringSubmatch(string(conf), -1) {
			ref := values.Container.Env[m[1]].ValueFrom.SecretKeyRef
			if ref.Name != "nats-users" || ref.Key == "" {
				t.Errorf("%s (accounts.conf) is not given to the NATS container from the nats-users Secret: %+v", m[1], ref)
				continue
			}
			value, ok := users[ref.Key]
			if !ok {
				t.Errorf("the nats-users template has no key %s", ref.Key)
			}
			t.Setenv(m[1], value)
		}
		opts, err := server.ProcessConfigFile(accountsConf)
		if err != nil {
			t.Fatalf("%s with the template's passwords: %v", accountsConf, err)
		}
		kefuUser := k.configMaps["kefu-config"]["KEFU_NATS_USER"]
		var u *server.User
		for _, cand := range opts.Users {
			if cand.Username == kefuUser {
				u = cand
			}
		}
		switch {
		case u == nil:
			t.Errorf("KEFU_NATS_USER %q is no user of %s", kefuUser, accountsConf)
		case u.Account == nil || u.Account.Name != "KEFU":
			t.Errorf("KEFU_NATS_USER %q is not in kefu's account", kefuUser)
		case u.Password != k.secrets["kefu-secrets"]["KEFU_NATS_PASSWORD"]:
			t.Errorf("kefu-secrets' KEFU_NATS_PASSWORD is not the password nats-users gives %s", kefuUser)
		}
		for name, data := range nk.secrets {
			for key, value := range data {
				if !isPlaceholder(value) {
					t.Errorf("Secret %s: %s=%q looks like a real credential", name, key, value)
				}
			}
		}
	})
}
