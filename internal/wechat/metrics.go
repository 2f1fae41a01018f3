package wechat

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts WeChat API calls. A nil *Metrics is valid and records
// nothing, so callers that do not export metrics pass nil.
//
// One observation is made per HTTP attempt, retries included, so that a burst
// of -1 answers shows up even when the final attempt succeeds. Labels are
// bounded: method is the API name ("getwaitcase", "custom_send", …) and
// errcode is WeChat's errcode ("0" on success) or one of "http_<status>",
// "malformed", "transport"; no openid or account ever becomes a label.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	unknown  *prometheus.CounterVec
}

// NewMetrics creates the collectors kefu_wechat_api_requests_total{method,errcode}
// and kefu_wechat_api_duration_seconds{method} and registers them with reg
// (skipped when reg is nil). Several clients in one process (kefu all) share
// one registry: when the collectors are already registered, the registered
// ones are reused. Any other registration error is a programming error and
// panics, as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_wechat_api_requests_total",
			Help: "WeChat API HTTP attempts by API method and errcode (0 = success).",
		}, []string{"method", "errcode"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kefu_wechat_api_duration_seconds",
			Help:    "Duration of WeChat API HTTP attempts by API method.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_wechat_api_unknown_outcome_total",
			Help: "Requests that change something at WeChat (custom_send, kfsession/close, …) and may or may not have been carried out, by API method and reason; they are not repeated.",
		}, []string{"method", "reason"}),
	}
	if reg == nil {
		return m
	}
	m.requests = registerOrReuse(reg, m.requests)
	m.duration = registerOrReuse(reg, m.duration)
	m.unknown = registerOrReuse(reg, m.unknown)
	// The customer message is the one an operator watches: its series
	// exist from the start so that an alert sees 0 before the first one.
	for _, reason := range UnknownReasons {
		m.unknown.WithLabelValues(MethodCustomSend, reason)
	}
	return m
}

func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic("register wechat metrics: " + err.Error())
}

// observe records one attempt.
func (m *Metrics) observe(method, errcode string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(method, errcode).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}

// unknownOutcome counts a request whose outcome is unknown.
func (m *Metrics) unknownOutcome(method, reason string) {
	if m == nil {
		return
	}
	m.unknown.WithLabelValues(method, reason).Inc()
}

// errcodeLabel maps the outcome of one attempt to the errcode label.
func errcodeLabel(err error) string {
	if err == nil {
		return "0"
	}
	if code, ok := errCodeOf(err); ok {
		return strconv.Itoa(code)
	}
	var statusErr *HTTPStatusError
	if errors.As(err, &statusErr) {
		return "http_" + strconv.Itoa(statusErr.StatusCode)
	}
	if errors.Is(err, ErrMalformedResponse) {
		return "malformed"
	}
	return "transport"
}
