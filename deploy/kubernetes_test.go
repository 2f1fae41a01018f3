package deploy

import (
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The parts of the Kubernetes objects the tests read. Decoding is lenient
// (other fields are the API server's business), but every field read here
// is spelled as the API spells it.

type k8sMeta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
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
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []struct {
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

// loadKubernetes parses every document of every k8s/*.yaml file.
func loadKubernetes(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no k8s/*.yaml: %v", err)
	}
	var objs []k8sObject
	for _, f := range files {
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
}

func loadK8s(t *testing.T) kubernetes {
	t.Helper()
	k := kubernetes{
		objs: loadKubernetes(t), deployments: map[string]k8sDeployment{}, services: map[string]k8sService{},
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
