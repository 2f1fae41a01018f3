package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
)

// unlimited is a Limiter that never waits: the throughput run measures
// kefu's own work, not the service's budget.
type unlimited struct{}

func (unlimited) Wait(ctx context.Context) error { return ctx.Err() }

type throughputResult struct {
	store          string
	posts          int
	from, to       string
	requests       int
	created        int
	backfill       time.Duration // Backfill call: fetch and publish
	handling       time.Duration // the part of backfill the poller spent on posts
	stored         time.Duration // from the start until the consumer acked the last post
	lagAtPublished int           // posts not yet stored when Backfill returned
	storedRows     int
	storedDistinct int
	missing        int // generated posts absent from the store
}

func runThroughput(ctx context.Context, o options) (res throughputResult, err error) {
	fake := tucaotest.New(tucaotest.Options{RateLimit: -1})
	defer fake.Close()
	posts := fake.Generate(o.posts, o.seed)
	from, to, err := window(posts)
	if err != nil {
		return res, err
	}
	cfg := fake.ClientConfig()
	cfg.Limiter = unlimited{}
	client, err := tucao.New(cfg)
	if err != nil {
		return res, fmt.Errorf("throughput: %w", err)
	}

	p, err := startPipeline(ctx, o)
	if err != nil {
		return res, fmt.Errorf("throughput: %w", err)
	}
	defer func() { err = errors.Join(err, p.close(context.WithoutCancel(ctx))) }()
	lister := &timedLister{client: client}
	poller, err := p.poller(lister, fake.ProductID())
	if err != nil {
		return res, fmt.Errorf("throughput: %w", err)
	}
	res = throughputResult{store: storeName(o, p.schema), posts: o.posts, from: from, to: to}

	runtime.GC() // generating the posts left garbage: the run should not collect it
	stopProfile, err := startProfile(o, "throughput")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, stopProfile()) }()
	start := time.Now()
	pr, err := poller.Backfill(ctx, from, to)
	if err != nil {
		return res, fmt.Errorf("throughput: backfill: %w", err)
	}
	res.backfill = time.Since(start)
	res.handling = lister.handling
	res.created, res.requests = pr.Created, fake.RequestCount()
	if n, err := p.committedPosts(); err == nil {
		res.lagAtPublished = o.posts - n
	}
	done, err := p.waitStored(ctx)
	if err != nil {
		return res, fmt.Errorf("throughput: %w", err)
	}
	res.stored = done.Sub(start)
	_ = stopProfile() // the measured part ends here; the deferred call reports an error

	ids, rows, err := p.storedIDs(ctx)
	if err != nil {
		return res, fmt.Errorf("throughput: %w", err)
	}
	res.storedRows, res.storedDistinct = rows, len(ids)
	for _, post := range posts {
		if !ids[post.ID] {
			res.missing++
		}
	}
	if res.created != o.posts || res.storedRows != o.posts || res.storedDistinct != o.posts || res.missing != 0 {
		return res, fmt.Errorf("throughput: %d posts generated, %d published, %d rows and %d distinct posts stored, %d missing",
			o.posts, res.created, res.storedRows, res.storedDistinct, res.missing)
	}
	return res, nil
}

func (r throughputResult) print(w io.Writer) {
	fmt.Fprintf(w, "throughput (rate limit off), store %s\n", r.store)
	fmt.Fprintf(w, "  posts                  %d (created %s..%s)\n", r.posts, r.from, r.to)
	fmt.Fprintf(w, "  requests               %d\n", r.requests)
	fmt.Fprintf(w, "  backfill (publish)     %.2f s  %.0f posts/s  (%d not yet stored at its end)\n",
		r.backfill.Seconds(), float64(r.created)/r.backfill.Seconds(), r.lagAtPublished)
	fmt.Fprintf(w, "    of which             %.2f s fetching pages, %.2f s publishing posts (cursor read, publish, cursor write)\n",
		(r.backfill - r.handling).Seconds(), r.handling.Seconds())
	fmt.Fprintf(w, "  all stored after       %.2f s\n", r.stored.Seconds())
	fmt.Fprintf(w, "  end to end             %.0f posts/s\n", float64(r.posts)/r.stored.Seconds())
	fmt.Fprintf(w, "  store check            %d rows, %d distinct, %d missing: ok\n", r.storedRows, r.storedDistinct, r.missing)
}
