package bus

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	handled   *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	redeliver *prometheus.CounterVec
	deadLet   *prometheus.CounterVec
	paused    *prometheus.GaugeVec
	// resubscribed counts Consumes started again after one ended (a
	// redial, a consumer deleted on the server).
	resubscribed *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_consumer_messages_total",
			Help: "Messages handled by durable consumers, by outcome (ack, retry, dead_letter; paused: handed back unhandled while the consumer pauses; skipped: a dead letter redriven for another consumer).",
		}, []string{"consumer", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kefu_consumer_handle_seconds",
			Help:    "Time a handler took for one message.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"consumer"}),
		redeliver: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_consumer_redeliveries_total",
			Help: "Messages received again after a failed or unacknowledged delivery.",
		}, []string{"consumer"}),
		deadLet: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_dlq_messages_total",
			Help: "Messages moved to a dead-letter subject.",
		}, []string{"consumer"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kefu_consumer_paused",
			Help: "1 while a durable consumer takes no messages because its dependency (the database) does not answer.",
		}, []string{"consumer"}),
		resubscribed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_consumer_redials_total",
			Help: "Times a durable consumer started consuming again after its Consume ended (the bus dialled a new connection, or the consumer was deleted on the server).",
		}, []string{"consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.handled, m.duration, m.redeliver, m.deadLet, m.paused, m.resubscribed)
	}
	return m
}

// consumerOutcomes are the outcome labels of kefu_consumer_messages_total.
var consumerOutcomes = []string{"ack", "retry", "dead_letter", "paused", "skipped"}

// initConsumer creates a durable consumer's counters at 0 when it
// subscribes. A counter that first appears at 1 shows no increase to
// Prometheus, so the first dead letter or redial after a start would pass
// unalerted (deploy/prometheus/alerts.yaml).
func (m *metrics) initConsumer(durable string) {
	m.deadLet.WithLabelValues(durable)
	m.resubscribed.WithLabelValues(durable)
	m.redeliver.WithLabelValues(durable)
	for _, outcome := range consumerOutcomes {
		m.handled.WithLabelValues(durable, outcome)
	}
}
