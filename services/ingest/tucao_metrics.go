package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

type tucaoMetrics struct {
	polls, posts, webhooks, kicks, hints *prometheus.CounterVec
	gaps                                 prometheus.Gauge
}

func newTucaoMetrics(reg prometheus.Registerer) *tucaoMetrics {
	m := &tucaoMetrics{
		polls:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_polls_total", Help: "Tucao polls by outcome (ok, error)."}, []string{"outcome"}),
		posts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_posts_published_total", Help: "Tucao post versions published, by kind (created, updated)."}, []string{"kind"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhooks_total", Help: "Tucao webhook pushes accepted, by type (post.created, reply.created, webhook.test, other)."}, []string{"type"}),
		kicks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhook_kicks_total",
			Help: "Webhook pushes that asked for a poll, by result: polled, or throttled (within 10 s of the last one; the next poll covers it)."}, []string{"result"}),
		hints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhook_hints_total",
			Help: "Post ids named by webhooks, by result: queued for a re-read at the next poll, or dropped (64 already waiting)."}, []string{"result"}),
		gaps: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_tucao_walk_gaps",
			Help: "Stretches of Tucao posts older than the newest not read yet (0: caught up); each poll reads on where the last stopped."}),
	}
	// Every series exists from the start, so that no request, however
	// strange, adds one (and dashboards see zeros rather than gaps).
	for _, o := range []string{"ok", "error"} {
		m.polls.WithLabelValues(o)
	}
	for _, k := range []string{"created", "updated"} {
		m.posts.WithLabelValues(k)
	}
	for t := range webhookTypes {
		m.webhooks.WithLabelValues(t)
	}
	m.webhooks.WithLabelValues("other")
	for _, r := range []string{"polled", "throttled"} {
		m.kicks.WithLabelValues(r)
	}
	for _, r := range []string{"queued", "dropped"} {
		m.hints.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.posts, m.webhooks, m.kicks, m.hints, m.gaps)
	}
	return m
}
