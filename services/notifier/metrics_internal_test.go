package notifier

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Every kind and outcome of kefu_notify_messages_total exists at 0 before
// the first event, so that an alert on its increase sees the first retry.
func TestMessageSeriesStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "kefu_notify_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var kind, outcome string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "kind":
					kind = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			got[[2]string{kind, outcome}] = m.GetCounter().GetValue()
		}
	}
	for _, kind := range Kinds {
		for _, outcome := range []string{"sent", "failed", "duplicate", "skipped", "throttled", "retry"} {
			v, ok := got[[2]string{kind, outcome}]
			if !ok || v != 0 {
				t.Errorf("kefu_notify_messages_total{kind=%q,outcome=%q}: present %v, value %v; want present at 0", kind, outcome, ok, v)
			}
		}
	}
	if want := len(Kinds) * 6; len(got) != want {
		t.Errorf("%d series, want %d", len(got), want)
	}
}
