package bus

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// lagCollector reports, at scrape time, how far behind each durable
// consumer of this process is (messages not yet delivered, delivered but
// not acknowledged, and redelivered), read from JetStream's consumer info.
type lagCollector struct {
	js        jetstream.JetStream
	mu        sync.Mutex
	consumers map[[2]string]struct{} // {stream, durable}

	pending, ackPending, redelivered *prometheus.Desc
}

func newLagCollector(js jetstream.JetStream) *lagCollector {
	return &lagCollector{
		js:          js,
		consumers:   map[[2]string]struct{}{},
		pending:     prometheus.NewDesc("kefu_consumer_pending_messages", "Messages in the stream not yet delivered to the consumer (its lag).", []string{"stream", "consumer"}, nil),
		ackPending:  prometheus.NewDesc("kefu_consumer_ack_pending_messages", "Messages delivered but not yet acknowledged.", []string{"stream", "consumer"}, nil),
		redelivered: prometheus.NewDesc("kefu_consumer_redelivered_messages", "Messages delivered more than once and not yet acknowledged.", []string{"stream", "consumer"}, nil),
	}
}

func (c *lagCollector) add(stream, durable string) {
	c.mu.Lock()
	c.consumers[[2]string{stream, durable}] = struct{}{}
	c.mu.Unlock()
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	keys := make([][2]string, 0, len(c.consumers))
	for k := range c.consumers {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, k := range keys {
		cons, err := c.js.Consumer(ctx, k[0], k[1])
		if err != nil {
			continue // not reachable now: no sample rather than a wrong one
		}
		info := cons.CachedInfo()
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), k[0], k[1])
	}
}
