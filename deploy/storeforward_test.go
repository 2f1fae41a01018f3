package deploy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/pkg/events"
)

// storeForwardDir is the overlay that runs ingest with store and forward.
var storeForwardDir = filepath.Join("k8s", "store-forward")

// natsConf is the configuration of compose's NATS nodes.
var natsConf = filepath.Join("nats", "nats.conf")

// deployedNATSOptions is nats/nats.conf as a node of compose.yaml reads
// it, without its routes (the other nodes are not there), on random ports
// with its store in the test's directory.
func deployedNATSOptions(t *testing.T) *server.Options {
	t.Helper()
	t.Setenv("SERVER_NAME", "nats-1")
	t.Setenv("NATS_KEFU_PASSWORD", kefuPassword)
	t.Setenv("NATS_EVENTS_PASSWORD", eventsPassword)
	t.Setenv("NATS_EVENTS_ADMIN_PASSWORD", eventsAdminPassword)
	opts, err := server.ProcessConfigFile(natsConf)
	if err != nil {
		t.Fatalf("%s: %v", natsConf, err)
	}
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	return opts
}

// Every NATS node accepts ingest's leaf node on the port ingest dials, and
// a leaf node that connects with kefu's user lands in kefu's account: an
// event stored in a replica's spool reaches KEFU_WECHAT.
func TestNATSConfigAcceptsIngestsLeafNode(t *testing.T) {
	opts := deployedNATSOptions(t)
	if opts.LeafNode.Port != bus.DefaultLeafPort {
		t.Fatalf("%s: leafnodes port %d, ingest dials %d", natsConf, opts.LeafNode.Port, bus.DefaultLeafPort)
	}
	if opts.LeafNode.Username != "" || len(opts.LeafNode.Users) > 0 || opts.LeafNode.Nkey != "" {
		t.Fatalf("%s: leafnodes has users of its own; ingest authenticates with kefu's client user", natsConf)
	}
	// The port as configured may be taken on this machine; the same
	// configuration on a free one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leafPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts.LeafNode.Host, opts.LeafNode.Port = "127.0.0.1", leafPort
	srv := natstest.Run(t, opts)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hub, _ := bustest.Open(t, bustest.Server(srv), bustest.Streams(events.StreamWeChat),
		bustest.Config(func(c *bus.Config) { c.User, c.Password = "kefu", kefuPassword })) // kefu's user
	u, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort))
	leaf, err := bus.OpenLeaf(ctx, hub, bus.LeafConfig{HubURLs: []*url.URL{u}, Domain: bus.DomainFromHost("kefu-ingest-", "kefu-ingest-0"),
		DataDir: t.TempDir(), MaxBytes: 1 << 20, Stream: events.StreamWeChat, TrimEvery: 100 * time.Millisecond, ReconnectEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaf.Close)

	ev := events.SessionCreated{
		Meta:         events.Meta{AppID: "wx1", OccurredAt: time.Unix(1399197672, 0), ReceivedAt: time.Now()},
		WeChatSource: events.WeChatSource{OpenID: "o-leaf", CreateTime: 1399197672},
		KfAccount:    "test1@test",
	}
	id := events.WeChatEventID("o-leaf", 1399197672, "kf_create_session", "test1@test")
	if _, err := leaf.Publish(ctx, ev, bus.Envelope{ID: id, Source: "kefu/test"}); err != nil {
		t.Fatal(err)
	}
	s, err := hub.Stream(ctx, events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.GetLastMsgForSubject(ctx, ev.EventSubject())
		if err == nil {
			if got := m.Header.Get(events.HeaderMsgID); got != id {
				t.Fatalf("forwarded with Nats-Msg-Id %q, want %q", got, id)
			}
			return
		}
		select {
		case <-ctx.Done():
			info, _ := s.Info(context.Background())
			t.Fatalf("the spool's event never reached %s through the leaf connection: %v (sources %+v)", events.StreamWeChat, err, info)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// compose.yaml's ingest keeps its data directory (the spool) on a named
// volume and a fixed host name (its leaf node's domain), so a recreated
// container finds its spool and does not add a source to KEFU_WECHAT.
func TestComposeIngestKeepsItsSpool(t *testing.T) {
	cf := loadCompose(t)
	svc, ok := cf.Services["ingest"]
	if !ok {
		t.Fatal("compose.yaml has no ingest service")
	}
	dataDir := loadDockerfile(t).finalEnv()["KEFU_DATA_DIR"]
	if v, ok := svc.Environment["KEFU_DATA_DIR"]; ok {
		dataDir = v
	}
	src, ok := mountSource(svc.Volumes, dataDir)
	if !ok {
		t.Fatalf("ingest: KEFU_DATA_DIR %q is not on a volume: a callback answered while NATS was away would be lost with the container", dataDir)
	}
	if _, declared := cf.Volumes[src]; !declared {
		t.Errorf("ingest: %q is not a declared named volume", src)
	}
	if svc.Hostname == "" {
		t.Error("ingest: no hostname: each new container would get a new leaf domain and a new source in KEFU_WECHAT")
	}
}

// k8sDoc is one document of a manifest, kept generic for comparing.
type k8sDoc = map[string]any

func loadDocs(t *testing.T, path string) []k8sDoc {
	t.Helper()
	nodes, err := decodeYAML(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []k8sDoc
	for _, n := range nodes {
		var d k8sDoc
		if err := n.Decode(&d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
	return docs
}

func findDoc(docs []k8sDoc, kind, name string) k8sDoc {
	for _, d := range docs {
		if d["kind"] == kind && dig(d, "metadata", "name") == name {
			return d
		}
	}
	return nil
}

// dig follows keys through nested maps.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// The overlay deploy/k8s/store-forward replaces ingest's Deployment by a
// StatefulSet that runs the very same pod (so the two cannot drift apart)
// plus store and forward and a persistent data volume; ingest.yaml's
// Service and PodDisruptionBudget select its pods; NATS admits its leaf
// connections and nobody else's.
func TestKubernetesStoreForwardOverlay(t *testing.T) {
	var kust struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
		Patches   []struct {
			Path string `yaml:"path"`
		} `yaml:"patches"`
		Images []map[string]string `yaml:"images"`
	}
	kdocs, err := decodeYAML(filepath.Join(storeForwardDir, "kustomization.yaml"))
	if err != nil || len(kdocs) != 1 {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if err := kdocs[0].Decode(&kust); err != nil {
		t.Fatal(err)
	}
	base := loadK8s(t)
	if !slices.Contains(kust.Resources, "../") && !slices.Contains(kust.Resources, "..") {
		t.Errorf("resources %v do not build on deploy/k8s", kust.Resources)
	}
	if kust.Namespace != base.kustomization.Namespace {
		t.Errorf("namespace %q, deploy/k8s uses %q", kust.Namespace, base.kustomization.Namespace)
	}
	var baseImages []map[string]string
	for _, img := range base.kustomization.Images {
		baseImages = append(baseImages, map[string]string{"name": img.Name, "newName": img.NewName, "newTag": img.NewTag})
	}
	if !reflect.DeepEqual(kust.Images, baseImages) {
		t.Errorf("images %v, deploy/k8s sets %v: the overlay's StatefulSet would run another image", kust.Images, baseImages)
	}
	deleted := false
	for _, p := range kust.Patches {
		for _, d := range loadDocs(t, filepath.Join(storeForwardDir, p.Path)) {
			if d["kind"] == "Deployment" && dig(d, "metadata", "name") == "kefu-ingest" && d["$patch"] == "delete" {
				deleted = true
			}
		}
	}
	if !deleted {
		t.Error("no patch deletes the Deployment kefu-ingest: both it and the StatefulSet would run")
	}

	ingestDocs := loadDocs(t, filepath.Join("k8s", "ingest.yaml"))
	sfDocs := loadDocs(t, filepath.Join(storeForwardDir, "ingest-statefulset.yaml"))
	dep := findDoc(ingestDocs, "Deployment", "kefu-ingest")
	sts := findDoc(sfDocs, "StatefulSet", "kefu-ingest")
	if dep == nil || sts == nil {
		t.Fatalf("Deployment in ingest.yaml: %v, StatefulSet in the overlay: %v", dep != nil, sts != nil)
	}

	// The pod: the Deployment's, with two settings added and the data
	// volume claimed instead of emptyDir.
	depPod, _ := dig(dep, "spec", "template").(map[string]any)
	stsPod, _ := dig(sts, "spec", "template").(map[string]any)
	added := map[string]string{}
	stsPod = rewrite(stsPod, func(c map[string]any) {
		var keep []any
		for _, e := range c["env"].([]any) {
			em := e.(map[string]any)
			if n := em["name"].(string); n == "KEFU_INGEST_STORE_FORWARD" || n == "KEFU_INGEST_SPOOL_MAX_BYTES" {
				added[n] = fmt.Sprint(em["value"])
				continue
			}
			keep = append(keep, e)
		}
		c["env"] = keep
	})
	depVolumes, _ := dig(depPod, "spec", "volumes").([]any)
	var withoutData []any
	for _, v := range depVolumes {
		if v.(map[string]any)["name"] != "data" {
			withoutData = append(withoutData, v)
		}
	}
	depPod = clone(depPod)
	depPod["spec"].(map[string]any)["volumes"] = withoutData
	if !reflect.DeepEqual(depPod, stsPod) {
		a, _ := yaml.Marshal(depPod)
		b, _ := yaml.Marshal(stsPod)
		t.Errorf("the StatefulSet's pod drifted from ingest.yaml's (besides store and forward and the data volume):\ningest.yaml:\n%s\nstore-forward:\n%s", a, b)
	}
	if added["KEFU_INGEST_STORE_FORWARD"] != "true" {
		t.Errorf("KEFU_INGEST_STORE_FORWARD = %q, want true", added["KEFU_INGEST_STORE_FORWARD"])
	}
	if added["KEFU_INGEST_SPOOL_MAX_BYTES"] == "" {
		t.Error("KEFU_INGEST_SPOOL_MAX_BYTES not set next to the volume's size")
	}
	claimed := false
	for _, c := range dig(sts, "spec", "volumeClaimTemplates").([]any) {
		claimed = claimed || dig(c, "metadata", "name") == "data"
	}
	mountedAtDataDir := false
	dataDir := loadDockerfile(t).finalEnv()["KEFU_DATA_DIR"]
	for _, c := range dig(stsPod, "spec", "containers").([]any) {
		for _, m := range dig(c, "volumeMounts").([]any) {
			mountedAtDataDir = mountedAtDataDir || (dig(m, "name") == "data" && dig(m, "mountPath") == dataDir)
		}
	}
	if !claimed || !mountedAtDataDir {
		t.Errorf("KEFU_DATA_DIR %s on a claimed volume: claim %v, mounted %v", dataDir, claimed, mountedAtDataDir)
	}
	governing, _ := dig(sts, "spec", "serviceName").(string)
	if svc := findDoc(sfDocs, "Service", governing); svc == nil || dig(svc, "spec", "clusterIP") != "None" {
		t.Errorf("serviceName %q is not a headless Service of the overlay", governing)
	}
	labels := map[string]string{}
	for k, v := range dig(stsPod, "metadata", "labels").(map[string]any) {
		labels[k] = fmt.Sprint(v)
	}
	if !selects(base.services["kefu-ingest"].Spec.Selector, labels) || !selects(base.pdbs["kefu-ingest"].Spec.Selector.MatchLabels, labels) {
		t.Error("ingest.yaml's Service or PodDisruptionBudget does not select the StatefulSet's pods")
	}

	// The leaf connection is allowed out of ingest's pods and into NATS's,
	// and only from kefu's pods.
	nk := loadK8sDir(t, filepath.Join("k8s", "nats"))
	natsServer := podPeer("a NATS server", natsNS, nil, natsServerLabels)
	ingestPod := podPeer("kefu's ingest", base.kustomization.Namespace, nil, labels)
	if isolated, ok := base.allows("Egress", base.kustomization.Namespace, labels, nil, natsServer, bus.DefaultLeafPort, "TCP"); !isolated || !ok {
		t.Errorf("ingest's pods may not dial NATS's leaf port %d (isolated %v, allowed %v)", bus.DefaultLeafPort, isolated, ok)
	}
	if _, ok := nk.allows("Ingress", natsNS, natsServerLabels, nil, ingestPod, bus.DefaultLeafPort, "TCP"); !ok {
		t.Errorf("NATS does not admit ingest's leaf connection on %d", bus.DefaultLeafPort)
	}
	otherTeam := podPeer("another team's pod", "analytics", map[string]string{eventsNSLabel: "true"}, map[string]string{"app": "reports"})
	if _, ok := nk.allows("Ingress", natsNS, natsServerLabels, nil, otherTeam, bus.DefaultLeafPort, "TCP"); ok {
		t.Error("NATS admits other teams' pods on the leaf port: a leaf node could join kefu's account with their user")
	}

	// The Helm values open the leaf port on the servers.
	var values struct {
		Config struct {
			Leafnodes struct {
				Enabled bool `yaml:"enabled"`
				Port    int  `yaml:"port"`
			} `yaml:"leafnodes"`
		} `yaml:"config"`
	}
	vdocs, err := decodeYAML(filepath.Join("k8s", "nats", helmValues))
	if err != nil || len(vdocs) == 0 {
		t.Fatalf("%s: %v", helmValues, err)
	}
	if err := vdocs[0].Decode(&values); err != nil {
		t.Fatal(err)
	}
	if lf := values.Config.Leafnodes; !lf.Enabled || lf.Port != bus.DefaultLeafPort {
		t.Errorf("Helm values: leafnodes %+v, want enabled on %d", lf, bus.DefaultLeafPort)
	}
}

// rewrite returns a copy of pod with f applied to each container.
func rewrite(pod map[string]any, f func(map[string]any)) map[string]any {
	pod = clone(pod)
	for _, c := range dig(pod, "spec", "containers").([]any) {
		f(c.(map[string]any))
	}
	return pod
}

// clone deep-copies a decoded YAML value.
func clone[T any](v T) T {
	var out any
	switch x := any(v).(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = clone(e)
		}
		out = m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = clone(e)
		}
		out = s
	default:
		return v
	}
	return out.(T)
}
