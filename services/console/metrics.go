package console

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	logins  *prometheus.CounterVec
	actions *prometheus.CounterVec
}

// newMetrics registers the console's metrics. Labels are fixed sets
// (roles, action names, outcome classes): nothing a visitor sends makes a
// series.
func newMetrics(reg prometheus.Registerer, h *hub) *metrics {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_console_logins_total",
			Help: "Console sign-ins by role (admin, read) or refused."}, []string{"role"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_console_actions_total",
			Help: "Console actions by name and outcome (ok, refused, failed)."}, []string{"action", "outcome"}),
	}
	streams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kefu_console_streams",
		Help: "Live console connections."}, func() float64 { return float64(h.streams()) })
	if reg != nil {
		reg.MustRegister(m.logins, m.actions, streams)
	}
	return m
}
