package store_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

// Benchmarks print posts/s (upserts) and p50/p99 latency (queries):
//
//	go test -run '^$' -bench . -benchtime 2000x ./services/feedback/store/
//	KEFU_TEST_PG_DSN=postgres://… go test -run '^$' -bench Postgres ./services/feedback/store/
//
// KEFU_BENCH_POSTS sets the size of the query benchmarks' table
// (default 1,000,000 posts).

func BenchmarkUpsertSQLite(b *testing.B)   { benchUpsert(b, storetest.SQLite) }
func BenchmarkUpsertPostgres(b *testing.B) { benchUpsert(b, storetest.Postgres) }

func benchPost(id int64, created time.Time) events.FeedbackPost {
	return events.FeedbackPost{
		Meta:        events.Meta{ProductID: "bench", OccurredAt: created, ReceivedAt: created},
		ID:          strconv.FormatInt(id, 10),
		OpenID:      "openid-" + strconv.FormatInt(id%10_000, 10),
		NickName:    "customer",
		AvatarURL:   "https://txc.qq.com/static/a.png",
		Content:     "The app crashes when I open the order page, please help " + strconv.FormatInt(id, 10),
		CreatedAt:   created,
		UpdatedAt:   created,
		LastReplyAt: created,
		Images:      []byte(`[]`),
		Replies:     []byte(`[{"id":"1","content":"thanks, we are looking into it"}]`),
		Extra:       []byte(`{"order":"42"}`),
	}
}

// benchUpsert writes batches of new posts, then batches of newer versions
// of stored posts (the UPDATE path).
func benchUpsert(b *testing.B, backend storetest.Backend) {
	for _, c := range []struct {
		batch   int
		updates bool
	}{{100, false}, {500, false}, {500, true}} {
		name := fmt.Sprintf("batch=%d/new", c.batch)
		if c.updates {
			name = fmt.Sprintf("batch=%d/newer-versions", c.batch)
		}
		b.Run(name, func(b *testing.B) {
			s := storetest.Open(b, backend)
			ctx := context.Background()
			start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			batch := make([]events.FeedbackPost, c.batch)
			next := int64(1)
			if c.updates {
				for i := range batch {
					batch[i] = benchPost(int64(i+1), start)
				}
				if err := s.UpsertPosts(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			version := 0
			for b.Loop() {
				version++
				for i := range batch {
					if c.updates {
						batch[i].UpdatedAt = start.Add(time.Duration(version) * time.Second)
						batch[i].ReplyCount = version
					} else {
						batch[i] = benchPost(next, start.Add(time.Duration(next)*time.Second))
						next++
					}
				}
				if err := s.UpsertPosts(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*c.batch)/b.Elapsed().Seconds(), "posts/s")
		})
	}
}

func BenchmarkListPostsSQLite(b *testing.B)   { benchListPosts(b, storetest.SQLite) }
func BenchmarkListPostsPostgres(b *testing.B) { benchListPosts(b, storetest.Postgres) }

// benchListPosts seeds a large table once, then measures the queries of
// the posts endpoint with their latency distribution.
func benchListPosts(b *testing.B, backend storetest.Backend) {
	posts := 1_000_000
	if v := os.Getenv("KEFU_BENCH_POSTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10_000 {
			b.Fatalf("KEFU_BENCH_POSTS=%q: want an integer ≥ 10000", v)
		}
		posts = n
	}
	// 100 posts and 5 closed sessions per customer on average.
	customers := posts / 100
	s := storetest.Open(b, backend)
	ctx := context.Background()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	began := time.Now()
	if err := store.SeedGenerated(ctx, s, posts, customers, 5, start); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d posts, %d customers, %d sessions in %s", posts, customers, customers*5, time.Since(began).Round(time.Millisecond))

	openid := func(i int) string { return "openid-" + strconv.Itoa(i*7919%customers) }
	secondPage := func(i int) store.PostQuery {
		first, err := s.ListPosts(ctx, store.PostQuery{OpenID: openid(i), Limit: 20})
		if err != nil || first.NextCursor == "" {
			b.Fatalf("first page: %v (cursor %q)", err, first.NextCursor)
		}
		return store.PostQuery{OpenID: openid(i), Limit: 20, Cursor: first.NextCursor}
	}
	for _, c := range []struct {
		name  string
		query func(i int) store.PostQuery
	}{
		{"openid", func(i int) store.PostQuery { return store.PostQuery{OpenID: openid(i)} }},
		{"openid-second-page", secondPage},
		{"openid-and-q", func(i int) store.PostQuery { return store.PostQuery{OpenID: openid(i), Q: "NUMBER 1"} }},
		{"newest-all-customers", func(int) store.PostQuery { return store.PostQuery{} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var took []time.Duration
			linked := 0
			i := 0
			for b.Loop() {
				q := c.query(i)
				i++
				t := time.Now()
				page, err := s.ListPosts(ctx, q)
				took = append(took, time.Since(t))
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Items) == 0 && q.Q == "" {
					b.Fatalf("no posts for %+v", q)
				}
				for _, p := range page.Items {
					if p.Session != nil {
						linked++
					}
				}
			}
			slices.Sort(took)
			pct := func(p float64) float64 {
				return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(linked)/float64(b.N), "linked/op")
		})
	}
}
