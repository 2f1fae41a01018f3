package ingest

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/wechat"
)

// Reasons of kefu_ingest_rejected_total: a closed set.
const (
	reasonMethod            = "method"
	reasonRead              = "read"
	reasonTooLarge          = "too_large"
	reasonEventTooLarge     = "event_too_large"
	reasonStale             = "stale"
	reasonSignature         = "signature"
	reasonReplayedSignature = "replayed_signature"
	reasonSignatureStore    = "signature_store"
	reasonAppID             = "appid"
	reasonNoAESKey          = "no_aes_key"
	reasonMalformed         = "malformed"
	reasonInvalid           = "invalid"
	reasonIP                = "ip"
	reasonIPListUnknown     = "ip_list_unknown"
)

// knownMessageTypes and knownEvents are the kind labels of
// kefu_ingest_callbacks_total; anything else counts as "other", so a
// stranger's MsgType never becomes a new series.
var (
	knownMessageTypes = set("text", "image", "voice", "video", "shortvideo", "location", "link", "file", "miniprogrampage")
	knownEvents       = set("subscribe", "unsubscribe", "scan", "location", "click", "view",
		"kf_create_session", "kf_switch_session", "kf_close_session",
		"templatesendjobfinish", "masssendjobfinish", "publishjobfinish",
		"scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin",
		"location_select", "view_miniprogram",
		"subscribe_msg_popup_event", "subscribe_msg_change_event", "subscribe_msg_sent_event")
)

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// kindOf is the kind label of a callback: message.<type> or event.<name>
// for the known ones, message.other or event.other for the rest.
func kindOf(cb *wechat.Callback) string {
	if cb.MsgType == "event" {
		if knownEvents[cb.Event] {
			return "event." + cb.Event
		}
		return "event.other"
	}
	if len(cb.MsgType) <= 32 {
		if t := strings.ToLower(cb.MsgType); knownMessageTypes[t] {
			return "message." + t
		}
	}
	return "message.other"
}

// callbackOutcomes are the outcome labels of kefu_ingest_callbacks_total.
var callbackOutcomes = []string{"published", "duplicate", "publish_failed", "too_large"}

// callbackKinds are every kind label kindOf can return.
func callbackKinds() []string {
	kinds := []string{"message.other", "event.other"}
	for t := range knownMessageTypes {
		kinds = append(kinds, "message."+t)
	}
	for e := range knownEvents {
		kinds = append(kinds, "event."+e)
	}
	return kinds
}

type metrics struct {
	callbacks      *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	verified       prometheus.Counter
	publishSeconds prometheus.Histogram
	callbackIPs    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_ingest_callbacks_total",
			Help: "Verified WeChat callbacks by kind (message.<type>, event.<name> for WeChat's documented ones, message.other and event.other for the rest) and outcome (published, duplicate, publish_failed, too_large).",
		}, []string{"kind", "outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_ingest_rejected_total",
			Help: "Callback requests rejected, by reason (method, read, too_large, event_too_large, stale, signature, replayed_signature, signature_store, appid, no_aes_key, malformed, invalid, ip, ip_list_unknown).",
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
		callbackIPs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kefu_ingest_callback_ip_prefixes",
			Help: "Entries of WeChat's callback IP list in use (KEFU_WECHAT_IP_ALLOWLIST); 0 until the first list is fetched.",
		}),
	}
	// Every series a request can touch exists from the start: the sets are
	// closed, and a scrape shows the zeros too.
	for _, reason := range []string{reasonMethod, reasonRead, reasonTooLarge, reasonEventTooLarge, reasonStale, reasonSignature,
		reasonReplayedSignature, reasonSignatureStore, reasonAppID, reasonNoAESKey, reasonMalformed, reasonInvalid, reasonIP, reasonIPListUnknown} {
		m.rejected.WithLabelValues(reason)
	}
	for _, kind := range callbackKinds() {
		for _, outcome := range callbackOutcomes {
			m.callbacks.WithLabelValues(kind, outcome)
		}
	}
	if reg != nil {
		reg.MustRegister(m.callbacks, m.rejected, m.verified, m.publishSeconds, m.callbackIPs)
	}
	return m
}
