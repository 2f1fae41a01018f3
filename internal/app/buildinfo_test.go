package app

import (
	"bytes"
	"io"
	goruntime "runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// What the build was stamped with is what `kefu version` prints and what
// kefu_build_info carries; a commit is shortened to 12 characters.
func TestVersionAndBuildInfoMetricShowTheStampedBuild(t *testing.T) {
	defer func(v, c, d string) { Version, Commit, BuildDate = v, c, d }(Version, Commit, BuildDate)
	Version, Commit, BuildDate = "v1.2.3", "0123456789abcdef0123", "2026-12-05T04:00:00Z"

	var out bytes.Buffer
	if code := Main([]string{"version"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "kefu v1.2.3 (commit 0123456789ab, built 2026-12-05T04:00:00Z, " + goruntime.Version() + ")\n"
	if out.String() != want {
		t.Fatalf("kefu version printed %q, want %q", out.String(), want)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfo().collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "kefu_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v", mfs)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	wantLabels := map[string]string{"version": "v1.2.3", "commit": "0123456789ab", "build_date": "2026-12-05T04:00:00Z", "goversion": goruntime.Version()}
	for k, v := range wantLabels {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
	if m.GetGauge().GetValue() != 1 {
		t.Errorf("value %v, want 1", m.GetGauge().GetValue())
	}
}

// Without stamps a build says so instead of inventing a version.
func TestUnstampedBuildIsDev(t *testing.T) {
	defer func(v, c, d string) { Version, Commit, BuildDate = v, c, d }(Version, Commit, BuildDate)
	Version, Commit, BuildDate = "", "", ""
	b := buildInfo()
	if b.Version != "dev" && b.Version[0] != 'v' {
		t.Errorf("version %q: neither dev nor a module version", b.Version)
	}
	if b.Commit == "" && b.String() != "kefu "+b.Version+" (commit unknown, built "+orUnknown(b.Date)+", "+goruntime.Version()+")" {
		t.Errorf("unstamped build prints %q", b.String())
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
