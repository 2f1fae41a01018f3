package queuecare

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events         *prometheus.CounterVec
	leave          *prometheus.CounterVec
	messages       *prometheus.CounterVec
	deferredCloses *prometheus.CounterVec
	staleSessions  prometheus.Gauge
	staleCloses    *prometheus.CounterVec
	reconcileCalls *prometheus.CounterVec
	corrections    *prometheus.CounterVec
	conflicts      prometheus.Counter
	active         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_queuecare_events_total",
			Help: "Events read into the customer read model, by kind and outcome (applied, unchanged, ignored).",
		}, []string{"kind", "outcome"}),
		leave: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_queuecare_leave_requests_total",
			Help: "Leave phrases handled, by outcome (left, already_left, not_waiting, served, superseded) and waiting_by_queue: getsession answered no queue time but the customer was seen joining or listed.",
		}, []string{"outcome"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_queuecare_messages_total",
			Help: "Messages to customers, by kind (left_queue, stale_closed) and outcome (sent, failed, duplicate, expired).",
		}, []string{"kind", "outcome"}),
		deferredCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_queuecare_deferred_closes_total",
			Help: "Sessions opened for customers who had left and closed by kefu, by outcome (closed, already_closed, failed).",
		}, []string{"outcome"}),
		staleSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kefu_queuecare_stale_sessions",
			Help: "Served sessions idle past the stale timeout at the last sweep (dry run included).",
		}),
		staleCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_queuecare_stale_closes_total",
			Help: "Stale sessions by outcome (closed, would_close in dry run, already_closed, failed).",
		}, []string{"outcome"}),
		reconcileCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_queuecare_reconcile_calls_total",
			Help: "getsession calls made by reconciliation, by outcome (ok, error).",
		}, []string{"outcome"}),
		corrections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_queuecare_reconcile_corrections_total",
			Help: "Customer states reconciliation changed, by old and new status.",
		}, []string{"from", "to"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kefu_queuecare_state_conflicts_total",
			Help: "Compare-and-set conflicts on customer records (concurrent handlers; retried).",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kefu_queuecare_active",
			Help: "1 when this replica holds the queue-care lease (sweeps and reconciles).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.leave, m.messages, m.deferredCloses, m.staleSessions, m.staleCloses,
			m.reconcileCalls, m.corrections, m.conflicts, m.active)
	}
	return m
}
