package wechat_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kefu-io/kefu/internal/wechat"
)

// counterValues maps "method/errcode" to the request counter's value.
func counterValues(t *testing.T, reg *prometheus.Registry) (counts map[string]float64, histograms map[string]uint64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts, histograms = map[string]float64{}, map[string]uint64{}
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "kefu_wechat_api_requests_total":
				counts[label(m, "method")+"/"+label(m, "errcode")] = m.GetCounter().GetValue()
			case "kefu_wechat_api_duration_seconds":
				histograms[label(m, "method")] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	return counts, histograms
}

func TestMetricsCountEveryAttemptByMethodAndErrcode(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := newAPIServer(t, inSequence(replyBusy, replyBadGateway, replyMalformed, apiReply{body: `{"count":0}`}))
	c := newTestClient(t, srv, staticToken("t"), &sleepRecorder{}, func(cfg *wechat.ClientConfig) {
		cfg.Metrics = wechat.NewMetrics(reg)
	})
	if _, err := c.GetWaitCase(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A second client on the same registry reuses the collectors.
	c2 := newTestClient(t, srv, staticToken("t"), nil, func(cfg *wechat.ClientConfig) {
		cfg.Metrics = wechat.NewMetrics(reg)
	})
	if _, err := c2.GetWaitCase(context.Background()); err != nil {
		t.Fatal(err)
	}
	counts, histograms := counterValues(t, reg)
	want := map[string]float64{
		"getwaitcase/-1":        1,
		"getwaitcase/http_502":  1,
		"getwaitcase/malformed": 1,
		"getwaitcase/0":         2,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("requests_total{%s} = %v, want %v (all: %v)", k, counts[k], v, counts)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("unexpected series: %v", counts)
	}
	if histograms["getwaitcase"] != 5 {
		t.Errorf("duration observations = %d, want 5", histograms["getwaitcase"])
	}
}

func TestMetricsNeverLabelAnOpenID(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := newAPIServer(t, inSequence(replyOK))
	c := newTestClient(t, srv, staticToken("t"), nil, func(cfg *wechat.ClientConfig) {
		cfg.Metrics = wechat.NewMetrics(reg)
	})
	if err := c.SendText(context.Background(), "OPENID-PRIVATE", "hi", "a@b"); err != nil {
		t.Fatal(err)
	}
	counts, _ := counterValues(t, reg)
	if counts["custom_send/0"] != 1 || len(counts) != 1 {
		t.Fatalf("series = %v, want only custom_send/0", counts)
	}
}

func TestNilMetricsAreDisabled(t *testing.T) {
	srv := newAPIServer(t, inSequence(replyOK))
	c := newTestClient(t, srv, staticToken("t"), nil) // Metrics nil
	if err := c.SendText(context.Background(), "o", "hi", ""); err != nil {
		t.Fatal(err)
	}
}
