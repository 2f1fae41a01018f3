package deploy

import (
	"testing"
	"time"
)

// graceMargin is what the orchestrator's grace period must exceed
// KEFU_SHUTDOWN_GRACE by: kefu returns at the grace at the latest, then the
// process exits and the runtime notices (a SIGKILL mid-write is what the
// margin prevents).
const graceMargin = 5 * time.Second

// shutdownGrace is KEFU_SHUTDOWN_GRACE as a process with env sees it.
func shutdownGrace(t *testing.T, env map[string]string) time.Duration {
	t.Helper()
	v, ok := env["KEFU_SHUTDOWN_GRACE"]
	if !ok || v == "" {
		v = defaultOf(t, "KEFU_SHUTDOWN_GRACE")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("KEFU_SHUTDOWN_GRACE %q: %v", v, err)
	}
	return d
}

func TestKubernetesGracePeriodCoversTheShutdownGrace(t *testing.T) {
	k := loadK8s(t)
	image := loadDockerfile(t).finalEnv()
	if len(k.deployments) == 0 {
		t.Fatal("no Deployments in k8s/")
	}
	for name, d := range k.deployments {
		spec := d.Spec.Template.Spec
		if len(spec.Containers) == 0 {
			continue
		}
		grace := shutdownGrace(t, k.env(t, image, spec.Containers[0]))
		if spec.TerminationGracePeriodSeconds == nil {
			t.Errorf("Deployment %s: no terminationGracePeriodSeconds (Kubernetes' 30 s default is not derived from KEFU_SHUTDOWN_GRACE %s)", name, grace)
			continue
		}
		if got := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; got < grace+graceMargin {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %s, want at least KEFU_SHUTDOWN_GRACE %s + %s", name, got, grace, graceMargin)
		}
	}
}

func TestComposeStopGracePeriodCoversTheShutdownGrace(t *testing.T) {
	cf := loadCompose(t)
	envSet, _ := exampleEnv(t)
	lookup := func(name string) (string, bool) { v, ok := envSet[name]; return v, ok }
	image := loadDockerfile(t).finalEnv()
	services := kefuServices(cf)
	if len(services) == 0 {
		t.Fatal("no kefu services in compose.yaml")
	}
	for _, name := range services {
		svc := cf.Services[name]
		env := map[string]string{}
		for k, v := range image {
			env[k] = v
		}
		for k, v := range svc.Environment {
			out, _, err := interpolate(v, lookup)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, k, err)
			}
			env[k] = out
		}
		grace := shutdownGrace(t, env)
		if svc.StopGracePeriod == "" {
			t.Errorf("service %s: no stop_grace_period (Compose's 10 s default is shorter than KEFU_SHUTDOWN_GRACE %s)", name, grace)
			continue
		}
		got, err := time.ParseDuration(svc.StopGracePeriod)
		if err != nil {
			t.Errorf("service %s: stop_grace_period %q: %v", name, svc.StopGracePeriod, err)
			continue
		}
		if got < grace+graceMargin {
			t.Errorf("service %s: stop_grace_period %s, want at least KEFU_SHUTDOWN_GRACE %s + %s", name, got, grace, graceMargin)
		}
	}
}
