package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
)

// busConfig is where every kefu process finds NATS and how it proves who it
// is: the one place that copies the KEFU_NATS_* settings into bus.Config,
// so that no caller can forget the credentials. name identifies the
// process in NATS connection lists; reg may be nil.
func busConfig(cfg config.Config, name string, log *zap.Logger, reg prometheus.Registerer) bus.Config {
	return bus.Config{
		URLs:         cfg.NATSURLs,
		Listen:       cfg.NATSListen,
		CredsFile:    cfg.NATSCreds,
		User:         cfg.NATSUser,
		Password:     cfg.NATSPassword.Value(),
		NKeySeed:     cfg.NATSNKeySeed.Value(),
		DataDir:      cfg.DataDir,
		Replicas:     cfg.NATSReplicas,
		StreamMaxAge: cfg.StreamMaxAge,
		// A replayed callback must be a duplicate or stale: the window
		// outlives a timestamp's freshness on both sides (ingest.New checks).
		DuplicateWindow: 2*cfg.CallbackWindow + time.Minute,
		RetryMaxBackoff: cfg.RetryMaxBackoff,
		Name:            name,
		Logger:          log,
		Registerer:      reg,
	}
}
