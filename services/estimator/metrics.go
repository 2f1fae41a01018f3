package estimator

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	polls          *prometheus.CounterVec
	estimates      prometheus.Counter
	abandoned      prometheus.Counter
	waiting        prometheus.Gauge
	leader         prometheus.Gauge
	observeSeconds prometheus.Histogram
	serviceSeconds prometheus.Gauge
	paceChanges    prometheus.Gauge
	joins          *prometheus.CounterVec
	members        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		polls:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_estimator_polls_total", Help: "Queue polls by outcome (ok, error, sessionlist_error, members_not_saved)."}, []string{"outcome"}),
		estimates:      prometheus.NewCounter(prometheus.CounterOpts{Name: "kefu_estimator_estimates_published_total", Help: "WaitEstimated events published."}),
		abandoned:      prometheus.NewCounter(prometheus.CounterOpts{Name: "kefu_estimator_abandoned_total", Help: "Customers inferred to have left the queue unserved."}),
		waiting:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_waiting_customers", Help: "Customers waiting at the last poll (getwaitcase count)."}),
		leader:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_active", Help: "1 when this replica holds the polling lease."}),
		observeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kefu_estimator_observe_seconds", Help: "Time to estimate one snapshot.", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14)}),
		serviceSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_session_seconds", Help: "Learned mean session length of a full agent (1/r)."}),
		paceChanges:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_pace_changes", Help: "Changes of the agents' pace detected since this replica started."}),
		joins:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_estimator_joins_total", Help: "Queue joins seen from ingest by outcome (joined: new in the queue, estimated at once; known: already waiting or served; ignored: malformed openid)."}, []string{"outcome"}),
		members:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_members", Help: "Customers known from joins and not listed by getwaitcase yet."}),
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.estimates, m.abandoned, m.waiting, m.leader, m.observeSeconds, m.serviceSeconds, m.paceChanges, m.joins, m.members)
	}
	return m
}
