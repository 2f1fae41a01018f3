package tucao_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
)

// start is 2018-10-18 17:03:10 in Shanghai, the first post of the example in Tucao's API documentation.
var start = time.Unix(1539853390, 0)

// newFake starts a fake server and returns it with a client that shares its
// automatic fake clock, so rate limiting and backoff take no real time.
func newFake(t testing.TB, modify func(*tucao.Config)) (*tucaotest.Server, *tucao.Client, *tucao.FakeClock) {
	t.Helper()
	clock := tucao.NewFakeClock(start)
	clock.SetAutoAdvance(true)
	srv := tucaotest.New(tucaotest.Options{Clock: clock})
	t.Cleanup(srv.Close)
	cfg := srv.ClientConfig()
	if modify != nil {
		modify(&cfg)
	}
	c, err := tucao.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, clock
}

func ids(posts []tucao.Post) []int64 {
	out := make([]int64, len(posts))
	for i, p := range posts {
		out[i] = p.IDInt()
	}
	return out
}

func TestPaginationWalksEveryPostOnceNewestFirst(t *testing.T) {
	srv, c, _ := newFake(t, nil)
	srv.Generate(250, 7)
	ctx := context.Background()

	var sizes []int
	var got []tucao.Post
	page, err := c.ListPosts(ctx, tucao.ListOptions{Count: 100})
	for {
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(page.Posts))
		got = append(got, page.Posts...)
		if page.NextPageURL == "" {
			break
		}
		if !strings.Contains(page.NextPageURL, "count=100") {
			t.Errorf("next_page_url %q lost the count", page.NextPageURL)
		}
		page, err = c.NextPage(ctx, page.NextPageURL)
	}
	if !slices.Equal(sizes, []int{100, 100, 50}) {
		t.Errorf("page sizes %v, want [100 100 50]", sizes)
	}
	if n := srv.RequestCount(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	gotIDs := ids(got)
	for i := 1; i < len(gotIDs); i++ {
		if gotIDs[i] >= gotIDs[i-1] {
			t.Fatalf("ids not strictly decreasing at %d: %d then %d", i, gotIDs[i-1], gotIDs[i])
		}
	}
	if want := ids(srv.Posts()); !slices.Equal(gotIDs, want) {
		t.Errorf("walked %d posts, server has %d; missing or extra posts", len(gotIDs), len(want))
	}
}

func TestIterateVisitsEveryPost(t *testing.T) {
	srv, c, _ := newFake(t, nil)
	srv.Generate(250, 8)
	var got []tucao.Post
	err := c.Iterate(context.Background(), tucao.ListOptions{Count: 100}, func(p tucao.Post) (bool, error) {
		got = append(got, p)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), ids(srv.Posts())) {
		t.Errorf("Iterate visited %d posts, want all %d newest first", len(got), len(srv.Posts()))
	}
}

// Walk stops at its page budget and says that older pages remain; resuming
// at the last post seen (max_id) reads the rest, the post at the seam once
// more at most.
func TestWalkStopsAtItsPageBudgetAndResumes(t *testing.T) {
	srv, c, _ := newFake(t, nil)
	srv.Generate(250, 10)
	var got []tucao.Post
	pages, err := c.Walk(context.Background(), tucao.ListOptions{Count: 100}, 2, func(p tucao.Post) (bool, error) {
		got = append(got, p)
		return true, nil
	})
	if !errors.Is(err, tucao.ErrMorePages) || pages != 2 || len(got) != 200 || srv.RequestCount() != 2 {
		t.Fatalf("Walk: %v, %d pages, %d posts, %d requests; want ErrMorePages, 2, 200, 2", err, pages, len(got), srv.RequestCount())
	}
	last := got[len(got)-1].ID
	pages, err = c.Walk(context.Background(), tucao.ListOptions{Count: 100, MaxID: last}, 2, func(p tucao.Post) (bool, error) {
		if p.ID != last {
			got = append(got, p)
		}
		return true, nil
	})
	if err != nil || pages != 1 {
		t.Fatalf("resumed Walk: %v, %d pages; want nil, 1", err, pages)
	}
	if !slices.Equal(ids(got), ids(srv.Posts())) {
		t.Errorf("two walks read %d posts, want all %d in order", len(got), len(srv.Posts()))
	}
}

func TestIterateStopsWhenTheCallbackSaysSo(t *testing.T) {
	srv, c, _ := newFake(t, nil)
	srv.Generate(250, 9)
	seen := 0
	err := c.Iterate(context.Background(), tucao.ListOptions{Count: 100}, func(tucao.Post) (bool, error) {
		seen++
		return seen < 5, nil
	})
	if err != nil || seen != 5 || srv.RequestCount() != 1 {
		t.Errorf("err %v, %d posts, %d requests; want nil, 5, 1", err, seen, srv.RequestCount())
	}
}

func TestFromToSelectsWholeShanghaiDays(t *testing.T) {
	srv, c, _ := newFake(t, nil)
	cst := time.FixedZone("CST", 8*3600)
	var want []string
	for day := 1; day <= 5; day++ {
		for _, at := range []time.Time{
			time.Date(2018, 10, day, 0, 0, 0, 0, cst),
			time.Date(2018, 10, day, 8, 30, 0, 0, cst), // 00:30 UTC: a UTC filter would still match
			time.Date(2018, 10, day, 23, 59, 59, 0, cst),
		} {
			p := srv.AddPost(tucaotest.PostInput{Content: "反馈", CreatedAt: at})
			if day == 2 || day == 3 {
				want = append(want, p.ID)
			}
		}
	}
	slices.Reverse(want)

	// Days 2 and 3: to is the day after the last (exclusive, as in Tucao's API documentation).
	first, err := c.ListPosts(context.Background(), tucao.ListOptions{Count: 4, From: "20181002", To: "20181004"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Total != 6 || first.From != "20181002" || first.To != "20181004" || first.PerPage != 4 {
		t.Errorf("pagination = total %d, from %q, to %q, per_page %d", first.Total, first.From, first.To, first.PerPage)
	}
	var got []string
	err = c.Iterate(context.Background(), tucao.ListOptions{Count: 4, From: "20181002", To: "20181004"}, func(p tucao.Post) (bool, error) {
		got = append(got, p.ID)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("window posts = %v, want %v", got, want)
	}
}

func TestClientStaysWithinTheServersRateLimit(t *testing.T) {
	// No retries: a single 429 from the fake would fail the run.
	srv, c, clock := newFake(t, func(cfg *tucao.Config) { cfg.MaxRetries = -1 })
	srv.Generate(5, 1)
	begin := clock.Now()
	for i := range 250 {
		if _, err := c.ListPosts(context.Background(), tucao.ListOptions{Count: 1}); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	if n := srv.RequestCount(); n != 250 {
		t.Errorf("%d requests, want 250", n)
	}
	if elapsed := clock.Now().Sub(begin); elapsed < 2*time.Minute {
		t.Errorf("250 requests in %v of clock time; the budget allows 100 a minute", elapsed)
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	tests := []struct {
		name  string
		fault tucaotest.FaultKind
	}{
		{"a 5xx is retried", tucaotest.FaultServerError},
		{"malformed JSON is retried", tucaotest.FaultMalformedJSON},
		{"a rate-limit answer is retried", tucaotest.FaultRateLimited},
		{"a timeout is retried", tucaotest.FaultSlow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, _ := newFake(t, func(cfg *tucao.Config) {
				cfg.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond}
			})
			srv.SetSlowDelay(10 * time.Second)
			srv.Generate(3, 1)
			srv.FailNext(2, tt.fault)
			page, err := c.ListPosts(context.Background(), tucao.ListOptions{})
			if err != nil {
				t.Fatalf("ListPosts: %v", err)
			}
			if len(page.Posts) != 3 || srv.RequestCount() != 3 {
				t.Errorf("%d posts after %d requests, want 3 after 3", len(page.Posts), srv.RequestCount())
			}
		})
	}
}

func TestRetriesEndWithATypedError(t *testing.T) {
	tests := []struct {
		name  string
		fault tucaotest.FaultKind
		check func(error) bool
	}{
		{"5xx gives an APIError with the HTTP status", tucaotest.FaultServerError, func(err error) bool {
			apiErr, ok := errors.AsType[*tucao.APIError](err)
			return ok && apiErr.HTTPStatus == 500 && apiErr.Status == tucao.StatusInternalError
		}},
		{"malformed JSON gives ErrMalformedResponse", tucaotest.FaultMalformedJSON, func(err error) bool {
			return errors.Is(err, tucao.ErrMalformedResponse)
		}},
		{"rate limiting gives ErrRateLimited", tucaotest.FaultRateLimited, func(err error) bool {
			return errors.Is(err, tucao.ErrRateLimited)
		}},
		{"timeouts give ErrTransport with a timeout inside", tucaotest.FaultSlow, func(err error) bool {
			netErr, ok := errors.AsType[net.Error](err)
			return errors.Is(err, tucao.ErrTransport) && ok && netErr.Timeout()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, _ := newFake(t, func(cfg *tucao.Config) {
				cfg.MaxRetries = 2
				cfg.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond}
			})
			srv.SetSlowDelay(10 * time.Second)
			srv.FailNext(10, tt.fault)
			_, err := c.ListPosts(context.Background(), tucao.ListOptions{})
			if err == nil || !tt.check(err) {
				t.Fatalf("ListPosts = %v", err)
			}
			if !tucao.IsRetryable(err) {
				t.Errorf("IsRetryable = false for %v", err)
			}
			if n := srv.RequestCount(); n != 3 {
				t.Errorf("%d requests, want 1 + MaxRetries = 3", n)
			}
		})
	}
}

func TestAuthenticationFailuresArePermanent(t *testing.T) {
	tests := []struct {
		name       string
		modify     func(*tucao.Config, *tucao.FakeClock)
		wantStatus int
	}{
		{"a wrong secret is a bad signature", func(cfg *tucao.Config, _ *tucao.FakeClock) { cfg.Secret = "wrong-secret" }, tucao.StatusBadSignature},
		// With a Date header the client corrects the skew (skew_test.go).
		{"a clock ten minutes slow is a stale timestamp when the answers tell no time", func(cfg *tucao.Config, server *tucao.FakeClock) {
			cfg.Clock = tucao.NewFakeClock(server.Now().Add(-10 * time.Minute))
		}, tucao.StatusStaleTimestamp},
		{"another product is unknown", func(cfg *tucao.Config, _ *tucao.FakeClock) { cfg.ProductID = "9999" }, tucao.StatusUnknownProduct},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := tucao.NewFakeClock(start)
			srv := tucaotest.New(tucaotest.Options{Clock: clock, OmitDate: true})
			defer srv.Close()
			cfg := srv.ClientConfig()
			tt.modify(&cfg, clock)
			c, err := tucao.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ListPosts(context.Background(), tucao.ListOptions{})
			apiErr, ok := errors.AsType[*tucao.APIError](err)
			if !ok || apiErr.Status != tt.wantStatus || apiErr.Retryable() || tucao.IsRetryable(err) {
				t.Fatalf("ListPosts = %v, want a permanent APIError with status %d", err, tt.wantStatus)
			}
			if n := srv.RequestCount(); n != 1 {
				t.Errorf("%d requests, want 1 (no retry)", n)
			}
			if strings.Contains(err.Error(), cfg.Secret) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

// BenchmarkListPosts100 measures fetching and decoding one full page of 100
// posts from the fake (rate limits off).
func BenchmarkListPosts100(b *testing.B) {
	srv := tucaotest.New(tucaotest.Options{RateLimit: -1})
	defer srv.Close()
	srv.Generate(300, 1)
	cfg := srv.ClientConfig()
	cfg.Limiter = unlimited{}
	c, err := tucao.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		page, err := c.ListPosts(ctx, tucao.ListOptions{Count: 100})
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Posts) != 100 {
			b.Fatalf("%d posts", len(page.Posts))
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "posts/s")
}

type unlimited struct{}

func (unlimited) Wait(context.Context) error { return nil }
