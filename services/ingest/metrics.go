package ingest

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	callbacks      *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	verified       prometheus.Counter
	publishSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_ingest_callbacks_total",
			Help: "Verified WeChat callbacks by kind (message.<type>, event.<name>) and outcome (published, duplicate, publish_failed).",
		}, []string{"kind", "outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_ingest_rejected_total",
			Help: "Callback requests rejected, by reason.",
		}, []string{"reason"}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kefu_ingest_url_verifications_total",
			Help: "Successful callback URL verifications.",
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kefu_ingest_publish_seconds",
			Help:    "Time from receiving a callback to JetStream's ack.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.callbacks, m.rejected, m.verified, m.publishSeconds)
	}
	return m
}
