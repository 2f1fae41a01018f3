package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clockSkewer is a Tucao client that corrects its timestamps by the
// server's clock (tucao.Client).
type clockSkewer interface {
	ClockSkew() time.Duration
}

// skewGauge is kefu_tucao_clock_skew_seconds, read from the client at
// scrape time: how far Tucao's clock is ahead of this host's (negative:
// behind). The client keeps polls working whatever it is; past a minute the
// host's clock needs fixing (deploy/prometheus/alerts.yaml).
func skewGauge(c clockSkewer) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kefu_tucao_clock_skew_seconds",
		Help: "Tucao's clock minus this host's, as measured from its answers and corrected for in the signed timestamps (0 until measured).",
	}, func() float64 { return c.ClockSkew().Seconds() })
}

// registerSkew registers skewGauge when the client measures its skew.
func registerSkew(reg prometheus.Registerer, client PostLister) {
	if c, ok := client.(clockSkewer); ok && reg != nil {
		reg.MustRegister(skewGauge(c))
	}
}
