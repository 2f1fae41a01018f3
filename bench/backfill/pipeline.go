package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/ingest"
)

// pipeline is what `kefu all` runs on the backfill path: an embedded
// JetStream with file storage, the KV buckets the poller keeps its state
// in, and the feedback service consuming kefu.tucao.post.> into a store.
// Each run gets a fresh one, so no run sees another's cursors or rows.
type pipeline struct {
	dir     string
	bus     *bus.Bus
	store   store.Store
	schema  string // PostgreSQL schema, dropped by close
	pgDSN   string
	svc     *feedback.Service
	reg     *prometheus.Registry
	cursors jetstream.KeyValue
	locks   jetstream.KeyValue
}

func startPipeline(ctx context.Context, o options) (_ *pipeline, err error) {
	dir, err := os.MkdirTemp("", "kefu-bench-backfill-")
	if err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	p := &pipeline{dir: dir, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.close(context.WithoutCancel(ctx)))
		}
	}()
	if p.bus, err = bus.Open(ctx, bus.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "nats"), Registerer: p.reg}); err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	// The poller publishes before anything else would have created the
	// stream, as ingest does in `kefu all`.
	if err = p.bus.EnsureStreams(ctx, events.StreamTucao, events.StreamWeChat, events.StreamDLQ); err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	if p.cursors, err = p.bus.KeyValue(ctx, bus.BucketCursors); err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	if p.locks, err = p.bus.KeyValue(ctx, bus.BucketLocks); err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	switch o.store {
	case "postgres":
		var b [6]byte
		_, _ = rand.Read(b[:])
		p.schema, p.pgDSN = "kefu_bench_"+hex.EncodeToString(b[:]), o.pgDSN
		p.store, err = store.OpenPostgres(ctx, o.pgDSN, store.WithSchema(p.schema))
	default:
		p.store, err = store.OpenSQLite(filepath.Join(dir, "feedback.db"))
	}
	if err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	// The service's defaults, as `kefu all` runs it.
	if p.svc, err = feedback.New(feedback.Config{}, feedback.Deps{Bus: p.bus, Store: p.store, Registerer: p.reg}); err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	if err = p.svc.Start(ctx); err != nil {
		p.svc = nil
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	return p, nil
}

// timedLister is the poller's view of the client, timing the poller's
// handling of each post (cursor read, publish, cursor write): the rest of
// a backfill is fetching pages.
type timedLister struct {
	client   ingest.PostLister
	handling time.Duration // only the backfill's goroutine adds to it
}

func (l *timedLister) Walk(ctx context.Context, opt tucao.ListOptions, maxPages int, fn func(tucao.Post) (bool, error)) (int, error) {
	return l.client.Walk(ctx, opt, maxPages, func(post tucao.Post) (bool, error) {
		start := time.Now()
		more, err := fn(post)
		l.handling += time.Since(start)
		return more, err
	})
}

// poller builds the ingest poller on client, with the service's defaults.
func (p *pipeline) poller(client ingest.PostLister, productID string) (*ingest.TucaoPoller, error) {
	poller, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: productID, Holder: "bench-backfill"},
		client, p.bus, p.cursors, p.locks, nil, p.reg)
	if err != nil {
		return nil, fmt.Errorf("new poller: %w", err)
	}
	return poller, nil
}

// waitStored waits until the feedback consumer has acknowledged every post
// published so far — each ack follows the commit of its row — and returns
// when it saw that.
func (p *pipeline) waitStored(ctx context.Context) (time.Time, error) {
	st, err := p.bus.Stream(ctx, events.StreamTucao)
	if err != nil {
		return time.Time{}, fmt.Errorf("wait for the store: %w", err)
	}
	var last uint64
	switch m, err := st.GetLastMsgForSubject(ctx, feedback.FilterPosts); {
	case err == nil:
		last = m.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return time.Time{}, fmt.Errorf("wait for the store: %w", err)
	}
	for {
		info, err := p.bus.ConsumerInfo(ctx, events.StreamTucao, feedback.DurablePosts)
		if err != nil {
			return time.Time{}, fmt.Errorf("wait for the store: %w", err)
		}
		if info.AckFloor.Stream >= last && info.NumPending == 0 && info.NumAckPending == 0 {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("wait for the store: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// committedPosts reads the feedback service's count of posts committed to
// the store, which costs the store nothing.
func (p *pipeline) committedPosts() (int, error) {
	families, err := p.reg.Gather()
	if err != nil {
		return 0, fmt.Errorf("read feedback metrics: %w", err)
	}
	for _, f := range families {
		if f.GetName() != "kefu_feedback_items_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == feedback.KindPost {
					return int(m.GetCounter().GetValue()), nil
				}
			}
		}
	}
	return 0, nil
}

// storedIDs lists every post in the store through the query the API uses.
// It returns the distinct ids and how many rows the listing gave.
func (p *pipeline) storedIDs(ctx context.Context) (map[string]bool, int, error) {
	ids := make(map[string]bool)
	rows := 0
	q := store.PostQuery{Limit: store.MaxLimit}
	for {
		page, err := p.store.ListPosts(ctx, q)
		if err != nil {
			return nil, 0, fmt.Errorf("list stored posts: %w", err)
		}
		for _, post := range page.Items {
			ids[post.ID] = true
		}
		rows += len(page.Items)
		if page.NextCursor == "" {
			return ids, rows, nil
		}
		q.Cursor = page.NextCursor
	}
}

// close stops the service, closes the store and the bus, drops the
// PostgreSQL schema and removes the temporary directory.
func (p *pipeline) close(ctx context.Context) error {
	var errs []error
	if p.svc != nil {
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		errs = append(errs, p.svc.Stop(stopCtx))
		cancel()
	}
	if p.store != nil {
		errs = append(errs, p.store.Close())
	}
	if p.bus != nil {
		p.bus.Close()
	}
	if p.schema != "" {
		errs = append(errs, dropSchema(ctx, p.pgDSN, p.schema))
	}
	errs = append(errs, os.RemoveAll(p.dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close pipeline: %w", err)
	}
	return nil
}

func dropSchema(ctx context.Context, dsn, schema string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	return nil
}

// window is the from/to (YYYYMMDD) pair covering every post.
func window(posts []tucao.Post) (from, to string, err error) {
	if len(posts) == 0 {
		return "", "", errors.New("backfill window: no posts")
	}
	first, err := posts[0].CreatedTime()
	if err != nil {
		return "", "", fmt.Errorf("backfill window: %w", err)
	}
	last, err := posts[len(posts)-1].CreatedTime()
	if err != nil {
		return "", "", fmt.Errorf("backfill window: %w", err)
	}
	return tucao.FormatDate(first), tucao.FormatDate(last), nil
}
