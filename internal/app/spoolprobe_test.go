package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
)

type readyFunc func(context.Context) error

func (f readyFunc) Ready(ctx context.Context) error { return f(ctx) }

// With store and forward, the ingest role answers callbacks from its spool
// while the cluster is away: it stays ready and live as long as the spool
// is; every other role (and ingest without the spool) is taken out at once
// and restarted after KEFU_NATS_DOWN_LIMIT.
func TestSpoolKeepsIngestReadyAndLiveThroughAClusterOutage(t *testing.T) {
	b, srv := bustest.Open(t, bustest.Config(func(c *bus.Config) { c.Logger = zap.NewNop() }))
	srv.Shutdown()
	srv.WaitForShutdown()
	natstest.Eventually(t, 10*time.Second, func() bool { return !b.UnusableSince().IsZero() }, "the bus noticing the server was gone")
	time.Sleep(20 * time.Millisecond) // past the 1 ms limit below

	spoolReady := true
	spool := readyFunc(func(context.Context) error {
		if spoolReady {
			return nil
		}
		return context.DeadlineExceeded
	})
	tests := []struct {
		name         string
		role         string
		storeForward bool
		spoolReady   bool
		want         int
	}{
		{"ingest with a ready spool stays in", "ingest", true, true, http.StatusOK},
		{"ingest with a full or broken spool is out", "ingest", true, false, http.StatusServiceUnavailable},
		{"ingest without the spool is out", "ingest", false, true, http.StatusServiceUnavailable},
		{"every other role is out", "all", true, true, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spoolReady = tt.spoolReady
			rt := &runtime{role: role{name: tt.role}, log: zap.NewNop(), bus: b, registry: prometheus.NewRegistry(),
				cfg:    config.Config{IngestStoreForward: tt.storeForward, NATSDownLimit: time.Millisecond},
				checks: []readyChecker{spool}}
			for path, h := range map[string]http.HandlerFunc{"/readyz": rt.readyz, "/healthz": rt.healthz} {
				rec := httptest.NewRecorder()
				h(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != tt.want {
					t.Errorf("%s: %d, want %d", path, rec.Code, tt.want)
				}
			}
		})
	}
}
