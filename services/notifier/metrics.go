package notifier

import "github.com/prometheus/client_golang/prometheus"

// Outcomes counted by kefu_notify_messages_total. Every handled event
// counts exactly once.
const (
	outcomeSent      = "sent"      // WeChat accepted the message
	outcomeFailed    = "failed"    // WeChat refused it, or its fate is unknown
	outcomeDuplicate = "duplicate" // redelivered or replayed: already handled
	outcomeSkipped   = "skipped"   // kind disabled, event too old, customer in session
	outcomeThrottled = "throttled" // wait message held back by WaitRules
	outcomeRetry     = "retry"     // not sent, will be tried again
)

// messageOutcomes are the outcome labels of kefu_notify_messages_total.
var messageOutcomes = []string{outcomeSent, outcomeFailed, outcomeDuplicate, outcomeSkipped, outcomeThrottled, outcomeRetry}

type metrics struct {
	messages      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	feedbackPages *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_notify_messages_total",
			Help: "Events handled by the notifier, by message kind and outcome (sent, failed, duplicate, skipped, throttled, retry).",
		}, []string{"kind", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kefu_notify_latency_seconds",
			Help:    "Time from the cause event's received_at to WeChat's answer to the send, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}, []string{"kind"}),
		feedbackPages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_notify_feedback_pages_total",
			Help: "Feedback link pages served, by result (ok, bad, expired).",
		}, []string{"result"}),
	}
	// The page is public: its series exist from the start, so no request
	// ever adds one.
	for _, result := range []string{"ok", "bad", "expired"} {
		m.feedbackPages.WithLabelValues(result)
	}
	// Every kind and outcome exists from the start at 0: a counter that
	// first appears at 1 shows Prometheus no increase, so the first retries
	// after a start would pass unalerted (deploy/prometheus/alerts.yaml).
	for _, kind := range Kinds {
		for _, outcome := range messageOutcomes {
			m.messages.WithLabelValues(kind, outcome)
		}
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.latency, m.feedbackPages)
	}
	return m
}
