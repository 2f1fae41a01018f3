package bus

// How a store-and-forward leaf (leaf.go) reaches its hub: the leaf node
// URLs and credentials, its JetStream domain; and the spool's metrics.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
)

// leafRemote is the leaf connection to the hub, authenticated as the bus is.
func (c *Config) leafRemote(urls []*url.URL) (*server.RemoteLeafOpts, error) {
	r := &server.RemoteLeafOpts{URLs: append([]*url.URL(nil), urls...)}
	for _, u := range urls {
		if u.Scheme == "tls" {
			r.TLS = true
		}
	}
	for _, u := range urls {
		if u.User != nil {
			return r, nil
		}
	}
	switch {
	case c.CredsFile != "":
		r.Credentials = c.CredsFile
	case c.User != "":
		for i, u := range urls {
			withUser := *u
			withUser.User = url.UserPassword(c.User, c.Password)
			r.URLs[i] = &withUser
		}
	case c.NKeySeed != "":
		// The server signs the nonce with the seed itself.
		seed := strings.TrimSpace(c.NKeySeed)
		if _, err := nkeys.FromSeed([]byte(seed)); err != nil {
			return nil, errors.New("KEFU_NATS_NKEY_SEED is not a valid nkey seed")
		}
		r.Nkey = seed
	}
	return r, nil
}

func validDomain(d string) bool {
	if d == "" || len(d) > 64 {
		return false
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// DomainFromHost turns a host name into a JetStream domain.
func DomainFromHost(prefix, host string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range host {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	d := b.String()
	if len(d) > 64 {
		d = d[:64]
	}
	return d
}

// DefaultLeafPort is the port NATS servers conventionally accept leaf
// node connections on.
const DefaultLeafPort = 7422

// LeafURLs turns the hub's client URLs (KEFU_NATS_URL) into its leaf node
// URLs: same hosts and credentials, the leaf node port. tls:// stays TLS.
func LeafURLs(clientURLs []string, port int) ([]*url.URL, error) {
	var out []*url.URL
	for i, s := range clientURLs {
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Hostname() == "" {
			// The URL may carry user:password; name only its position.
			return nil, fmt.Errorf("KEFU_NATS_URL: URL number %d has no host", i+1)
		}
		scheme := "nats-leaf"
		if u.Scheme == "tls" {
			scheme = "tls"
		}
		out = append(out, &url.URL{Scheme: scheme, User: u.User, Host: net.JoinHostPort(u.Hostname(), strconv.Itoa(port))})
	}
	if len(out) == 0 {
		return nil, errors.New("store and forward needs the NATS cluster's address (KEFU_NATS_URL)")
	}
	return out, nil
}

// spoolCollector exports the spool's content and the hub connection.
type spoolCollector struct {
	l                      *Leaf
	msgs, bytes, connected *prometheus.Desc
}

// Collector exports kefu_ingest_spool_messages, kefu_ingest_spool_bytes
// and kefu_ingest_spool_hub_connected.
func (l *Leaf) Collector() prometheus.Collector {
	return &spoolCollector{l: l,
		msgs:      prometheus.NewDesc("kefu_ingest_spool_messages", "Events in the store-and-forward spool not yet trimmed (the hub has not reported them stored).", nil, nil),
		bytes:     prometheus.NewDesc("kefu_ingest_spool_bytes", "Bytes in the store-and-forward spool; at KEFU_INGEST_SPOOL_MAX_BYTES callbacks are refused with 503.", nil, nil),
		connected: prometheus.NewDesc("kefu_ingest_spool_hub_connected", "1 while the leaf node is connected to the NATS cluster.", nil, nil),
	}
}

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.msgs
	ch <- c.bytes
	ch <- c.connected
}

func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.l.State(ctx)
	if err != nil {
		return
	}
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(st.Msgs))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, connected)
}
