package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/tucao"
)

type skewedLister struct{ skew time.Duration }

func (s *skewedLister) ClockSkew() time.Duration { return s.skew }
func (s *skewedLister) Walk(context.Context, tucao.ListOptions, int, func(tucao.Post) (bool, error)) (int, error) {
	return 0, nil
}

// The gauge reads the client's skew at every scrape, and only a client
// that measures skew gets one.
func TestTucaoClockSkewGauge(t *testing.T) {
	c := &skewedLister{}
	reg := prometheus.NewRegistry()
	registerSkew(reg, c)
	value := func() (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "kefu_tucao_clock_skew_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	for _, skew := range []time.Duration{0, 90 * time.Second, -2500 * time.Millisecond} {
		c.skew = skew
		if got, ok := value(); !ok || got != skew.Seconds() {
			t.Errorf("skew %v: gauge %v (present %v), want %v", skew, got, ok, skew.Seconds())
		}
	}

	other := prometheus.NewRegistry()
	registerSkew(other, plainLister{})
	if mfs, _ := other.Gather(); len(mfs) != 0 {
		t.Errorf("a client without ClockSkew registered %d families", len(mfs))
	}
	registerSkew(nil, c) // no registry: nothing to do, no panic
}

type plainLister struct{}

func (plainLister) Walk(context.Context, tucao.ListOptions, int, func(tucao.Post) (bool, error)) (int, error) {
	return 0, nil
}
