package app

import (
	"fmt"
	goruntime "runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at build time, as deploy/Dockerfile does:
//
//	-ldflags "-X github.com/kefu-io/kefu/internal/app.Version=v1.2.3
//	          -X github.com/kefu-io/kefu/internal/app.Commit=0a1b2c3
//	          -X github.com/kefu-io/kefu/internal/app.BuildDate=2026-12-05T04:00:00Z"
//
// Unset, they come from the Go toolchain's build information: the module
// version of `go install …@v1.2.3`, and the VCS revision and commit time
// of a build in a git checkout.
var (
	Version   = ""
	Commit    = ""
	BuildDate = ""
)

// build is what a binary knows of how it was built.
type build struct {
	Version, Commit, Date, GoVersion string
	// Modified is set when the checkout had uncommitted changes.
	Modified bool
}

func buildInfo() build {
	b := build{Version: Version, Commit: Commit, Date: BuildDate, GoVersion: goruntime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.time":
				if b.Date == "" {
					b.Date = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if len(b.Commit) > 12 {
		b.Commit = b.Commit[:12]
	}
	return b
}

func version() string { return buildInfo().Version }

// String is the line `kefu version` prints.
func (b build) String() string {
	commit, date := b.Commit, b.Date
	if commit == "" {
		commit = "unknown"
	} else if b.Modified {
		commit += "+modified"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("kefu %s (commit %s, built %s, %s)", b.Version, commit, date, b.GoVersion)
}

// collector is kefu_build_info, the usual constant 1 whose labels say
// which build runs (for dashboards and alerts across a rolling upgrade).
func (b build) collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kefu_build_info",
		Help: "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "commit": b.Commit, "build_date": b.Date, "goversion": b.GoVersion,
		},
	})
	g.Set(1)
	return g
}
