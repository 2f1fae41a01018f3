package bus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/pkg/events"
)

// Store and forward. A Leaf is a NATS server embedded in the process (no
// listener of its own) that runs JetStream in a domain of its own and
// connects to the hub cluster as a leaf node. Events are published into a
// local file stream, SpoolStream, and acknowledged once it has stored them
// (fsynced); the hub's stream sources SpoolStream across the leaf
// connection (External APIPrefix "$JS.<domain>.API"), so events reach the
// hub while it is connected and wait on local disk while it is not. NATS
// does the forwarding, in order and resuming from the last sequence the hub
// persisted; kefu only trims what the hub reports it has stored.
//
// Exactly once: the spool de-duplicates by Nats-Msg-Id (a sender's retry
// to the same process during an outage), and the hub de-duplicates sourced
// messages by Nats-Msg-Id as it does published ones (a retry that reached
// another replica, or a message published there directly).
//
// The spool's subjects are the hub stream's subjects behind spoolPrefix,
// and the source maps them back: if the spool used the hub's own subjects,
// the hub stream's interest, which crosses the leaf connection, would store
// every publish directly as well.

// SpoolStream is the leaf's local stream.
const SpoolStream = "KEFU_INGEST_SPOOL"

const spoolPrefix = "kefuspool."

// jsErrCodeStreamStoreFailed is the server's "could not store" error
// (JSStreamStoreFailedF), which a full DiscardNew stream answers.
const jsErrCodeStreamStoreFailed jetstream.ErrorCode = 10077

// ErrSpoolFull means the local spool holds its maximum: the hub has been
// unreachable for too long. Callers answer "try again later".
var ErrSpoolFull = errors.New("store-and-forward spool is full")

// LeafConfig configures a store-and-forward leaf.
type LeafConfig struct {
	// HubURLs are the hub cluster's leaf node listeners
	// (nats-leaf://host:7422). User info in a URL is used as credentials;
	// otherwise the hub bus's credentials are.
	HubURLs []*url.URL
	// Domain is the leaf's JetStream domain: unique among the hub's leaf
	// nodes and stable across restarts of this process (the hub's stream
	// keeps one source per domain).
	Domain string
	// DataDir holds the spool (DataDir/leaf-<domain>).
	DataDir string
	// MaxBytes bounds the spool; when full, Publish fails with ErrSpoolFull.
	MaxBytes int64
	// Stream is the hub stream that sources the spool (KEFU_WECHAT).
	Stream string
	// TrimEvery is how often the hub's progress is read to trim the spool
	// and to put the source back if the hub stream lost it (default 2s).
	TrimEvery time.Duration
	// ReconnectEvery is the wait between attempts to reach the hub
	// (default 1s).
	ReconnectEvery time.Duration
}

// Leaf is an embedded leaf node with the spool; it publishes like a Bus.
type Leaf struct {
	cfg       LeafConfig
	hub       *Bus
	srv       *server.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	log       *zap.Logger
	apiPrefix string
	subjects  []string

	// upSince and lastNudge belong to the sync loop (nudge).
	upSince, lastNudge time.Time

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// OpenLeaf starts the leaf node, creates the spool, and starts keeping the
// hub stream's source and trimming what the hub has stored. The hub need
// not be reachable: the source is added as soon as it is.
func OpenLeaf(ctx context.Context, hub *Bus, cfg LeafConfig) (*Leaf, error) {
	if cfg.TrimEvery <= 0 {
		cfg.TrimEvery = 2 * time.Second
	}
	if cfg.ReconnectEvery <= 0 {
		cfg.ReconnectEvery = time.Second
	}
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("store and forward: the spool needs a size (KEFU_INGEST_SPOOL_MAX_BYTES)")
	}
	if len(cfg.HubURLs) == 0 {
		return nil, errors.New("store and forward: no hub leaf node URL")
	}
	if !validDomain(cfg.Domain) {
		return nil, fmt.Errorf("store and forward: JetStream domain %q: use letters, digits, '-' and '_'", cfg.Domain)
	}
	hubSubjects, ok := events.StreamSubjects[cfg.Stream]
	if !ok {
		return nil, fmt.Errorf("store and forward: unknown stream %q", cfg.Stream)
	}
	remote, err := hub.cfg.leafRemote(cfg.HubURLs)
	if err != nil {
		return nil, err
	}
	storeDir := filepath.Join(cfg.DataDir, "leaf-"+cfg.Domain)
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("store and forward: create KEFU_DATA_DIR: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:      "kefu-leaf-" + cfg.Domain,
		DontListen:      true, // reached in process only
		JetStream:       true,
		JetStreamDomain: cfg.Domain,
		StoreDir:        storeDir,
		// "success" promises the event survives the machine, not only
		// the process: write it to disk before acknowledging.
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      true,
		LeafNode: server.LeafNodeOpts{
			ReconnectInterval: cfg.ReconnectEvery,
			Remotes:           []*server.RemoteLeafOpts{remote},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("store and forward: leaf node: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("store and forward: the leaf node did not start")
	}
	l := &Leaf{cfg: cfg, hub: hub, srv: srv, log: hub.log.Named("leaf"), apiPrefix: "$JS." + cfg.Domain + ".API",
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, s := range hubSubjects {
		l.subjects = append(l.subjects, spoolPrefix+s)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name(hub.cfg.Name+"-leaf"), nats.MaxReconnects(-1))
	if err != nil {
		l.shutdown()
		return nil, fmt.Errorf("store and forward: connect to the leaf node: %w", err)
	}
	l.nc = nc
	if l.js, err = jetstream.New(nc); err != nil {
		l.shutdown()
		return nil, err
	}
	if _, err := l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        SpoolStream,
		Description: "kefu store and forward: events waiting for the hub's " + cfg.Stream,
		Subjects:    l.subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxBytes:    cfg.MaxBytes,
		// Never drop what was acknowledged: refuse new events instead.
		Discard:    jetstream.DiscardNew,
		Duplicates: hub.cfg.DuplicateWindow,
		Replicas:   1,
	}); err != nil {
		l.shutdown()
		return nil, fmt.Errorf("store and forward: create %s: %w", SpoolStream, err)
	}
	go l.run()
	return l, nil
}

// Domain is the leaf's JetStream domain.
func (l *Leaf) Domain() string { return l.cfg.Domain }

// Source is how the hub stream sources the spool.
func (l *Leaf) Source() *jetstream.StreamSource {
	src := &jetstream.StreamSource{Name: SpoolStream, External: &jetstream.ExternalStream{APIPrefix: l.apiPrefix}}
	for _, s := range l.subjects {
		src.SubjectTransforms = append(src.SubjectTransforms, jetstream.SubjectTransformConfig{Source: s, Destination: s[len(spoolPrefix):]})
	}
	return src
}

func (l *Leaf) isOurs(name string, ext *jetstream.ExternalStream) bool {
	return name == SpoolStream && ext != nil && ext.APIPrefix == l.apiPrefix
}

// MaxPayload is the smaller of the leaf's and the hub's limits: a spooled
// event must fit the hub too.
func (l *Leaf) MaxPayload() int64 {
	max := l.nc.MaxPayload()
	if h := l.hub.MaxPayload(); h > 0 && (max <= 0 || h < max) {
		max = h
	}
	return max
}

// DuplicateWindow is the de-duplication window of the spool and the hub.
func (l *Leaf) DuplicateWindow() time.Duration { return l.hub.DuplicateWindow() }

// KeyValue opens a bucket on the hub (KV is not spooled).
func (l *Leaf) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return l.hub.KeyValue(ctx, bucket)
}

// Publish stores ev in the spool, returning once it is on local disk.
// Published.Stream is SpoolStream; Duplicate reports the spool's own
// de-duplication (the hub drops sourced duplicates silently).
func (l *Leaf) Publish(ctx context.Context, ev events.Event, env Envelope) (Published, error) {
	data, err := events.AppendEncode(nil, ev)
	if err != nil {
		return Published{}, err
	}
	subject := ev.EventSubject()
	if env.Time.IsZero() {
		env.Time = time.Now()
	}
	if env.ID == "" {
		env.ID = nats.NewInbox()[len(nats.InboxPrefix):]
	}
	msg := &nats.Msg{Subject: spoolPrefix + subject, Data: data, Header: make(nats.Header, 8+len(env.Headers))}
	// The headers name the event's own subject (ce-type), not the spool's.
	events.SetHeaders(msg.Header, subject, env.ID, env.Source, env.Time)
	for k, v := range env.Headers {
		msg.Header[k] = []string{v}
	}
	if max := l.MaxPayload(); max > 0 && int64(len(data)+headerSize(msg.Header)+len(spoolPrefix)) > max {
		return Published{}, fmt.Errorf("spool %s: %d bytes of body: %w (max_payload %d)", subject, len(data), ErrTooLarge, max)
	}
	ack, err := l.js.PublishMsg(ctx, msg)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeStreamStoreFailed && strings.Contains(apiErr.Description, "maximum bytes") {
			return Published{}, fmt.Errorf("spool %s: %w (KEFU_INGEST_SPOOL_MAX_BYTES %d)", subject, ErrSpoolFull, l.cfg.MaxBytes)
		}
		return Published{}, fmt.Errorf("spool %s: %w", subject, tooLarge(err))
	}
	return Published{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Ready reports whether the spool accepts events; the hub may be away.
func (l *Leaf) Ready(ctx context.Context) error {
	if _, err := l.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("store-and-forward spool: %w", err)
	}
	return nil
}

// SpoolState is what waits in the spool.
type SpoolState struct {
	Msgs, Bytes uint64
	// Connected reports whether the leaf connection to the hub is up.
	Connected bool
}

// State reports the spool's content and the hub connection.
func (l *Leaf) State(ctx context.Context) (SpoolState, error) {
	s, err := l.js.Stream(ctx, SpoolStream)
	if err != nil {
		return SpoolState{}, err
	}
	info := s.CachedInfo()
	return SpoolState{Msgs: info.State.Msgs, Bytes: info.State.Bytes, Connected: l.srv.NumLeafNodes() > 0}, nil
}

func (l *Leaf) run() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.TrimEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.sync(ctx); err != nil {
			l.log.Debug("store and forward: hub not reachable yet", zap.Error(err))
		}
		cancel()
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// sync makes sure the hub stream sources the spool, and trims the spool
// up to the last sequence the hub has persisted from it.
func (l *Leaf) sync(ctx context.Context) error {
	hs, err := l.hub.js().Stream(ctx, l.cfg.Stream)
	if err != nil {
		return err
	}
	info := hs.CachedInfo()
	has := false
	for _, src := range info.Config.Sources {
		if l.isOurs(src.Name, src.External) {
			has = true
		}
	}
	if !has {
		// Roles update the stream with the contract's configuration,
		// which keeps existing sources; this puts ours back after a race.
		cfg := info.Config
		cfg.Sources = append(cfg.Sources, l.Source())
		if _, err := l.hub.js().UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("add source %s to %s: %w", l.apiPrefix, l.cfg.Stream, err)
		}
		l.log.Info("store and forward: the hub stream sources this spool", zap.String("stream", l.cfg.Stream), zap.String("domain", l.cfg.Domain))
		return nil
	}
	var stored uint64
	for _, si := range info.Sources {
		if si != nil && l.isOurs(si.Name, si.External) {
			stored = si.Seq
			l.nudge(si.Active)
		}
	}
	if stored == 0 {
		return nil
	}
	spool, err := l.js.Stream(ctx, SpoolStream)
	if err != nil {
		return err
	}
	st := spool.CachedInfo().State
	// A hub sequence beyond the spool's last would be another spool's
	// (this one was lost and created anew): never trim on it.
	if st.Msgs == 0 || stored < st.FirstSeq || stored > st.LastSeq {
		return nil
	}
	return spool.Purge(ctx, jetstream.WithPurgeSequence(stored+1))
}

// staleSource is how long the hub may go without hearing from the spool
// (its source consumer sends a heartbeat every second) while the leaf
// connection is up before the connection is renewed. It exceeds the 10 s
// after which the hub counts a source with a consumer as stale, so that
// the retry a reconnection triggers applies to it too.
const staleSource = 12 * time.Second

// nudge renews the leaf connection when the hub's source has been silent
// for a while although the connection is up. The hub retries a source it
// failed to set up (say, at its own restart, before the leaf was back)
// with a back-off of up to two minutes, but at once when a leaf node
// connects: reconnecting cuts the wait short.
func (l *Leaf) nudge(active time.Duration) {
	now := time.Now()
	if l.srv.NumLeafNodes() == 0 {
		l.upSince = time.Time{}
		return
	}
	if l.upSince.IsZero() {
		l.upSince = now
	}
	if (active >= 0 && active < staleSource) || now.Sub(l.upSince) < staleSource || now.Sub(l.lastNudge) < staleSource+3*time.Second {
		return
	}
	lz, err := l.srv.Leafz(nil)
	if err != nil {
		return
	}
	l.lastNudge = now
	l.log.Info("store and forward: the hub has not fetched from the spool for a while; reconnecting to the hub", zap.Duration("silent", active))
	for _, ln := range lz.Leafs {
		l.srv.DisconnectClientByID(ln.ID)
	}
}

// Close stops trimming and shuts the leaf node down; what the spool holds
// stays on disk for the next start.
func (l *Leaf) Close() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.shutdown()
	})
}

func (l *Leaf) shutdown() {
	if l.nc != nil {
		l.nc.Close()
	}
	l.srv.Shutdown()
	l.srv.WaitForShutdown()
}
