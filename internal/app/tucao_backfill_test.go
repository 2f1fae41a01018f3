package app

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
)

// `kefu ingest --tucao-backfill --from D --to D` publishes the posts of the
// day D (Asia/Shanghai) and no other: --to is the last day, included,
// while Tucao's to is exclusive.
func TestTucaoBackfillOfOneDayFromTheCommandLine(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	fake := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(fake.Close)
	fake.SetClock(tucao.NewFakeClock(time.Date(2026, 1, 9, 0, 0, 0, 0, cst)))
	for day := 10; day <= 12; day++ {
		for _, hour := range []int{0, 12, 23} {
			fake.AddPost(tucaotest.PostInput{Content: "历史反馈", CreatedAt: time.Date(2026, 1, day, hour, 59, 0, 0, cst)})
		}
	}
	fake.SetClock(nil) // request timestamps are checked against the real clock
	// A backfill publishes to the running kefu's NATS.
	t.Setenv("KEFU_NATS_URL", natstest.Run(t, nil).ClientURL())
	t.Setenv("KEFU_TUCAO_PRODUCT_ID", fake.ProductID())
	t.Setenv("KEFU_TUCAO_SECRET", fake.Secret())
	t.Setenv("KEFU_TUCAO_API_BASE", fake.URL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	var progress bytes.Buffer // not a terminal: no progress line
	if err := run(ctx, []string{"ingest", "--tucao-backfill", "--from", "2026-01-11", "--to", "2026-01-11"}, &out, &progress); err != nil {
		t.Fatalf("backfill: %v (%s)", err, out.String())
	}
	if !strings.Contains(out.String(), "backfill 2026-01-11..2026-01-11 (both days included, Asia/Shanghai, UTC+8): 3 posts read, 3 published as created") {
		t.Fatalf("backfill of one day: %q, want its 3 posts and the day in ISO form", out.String())
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("want one summary line, got %q", out.String())
	}
	if progress.Len() != 0 {
		t.Fatalf("stderr is no terminal, yet the backfill wrote %q", progress.String())
	}
	// The older YYYYMMDD form is still accepted; the summary says ISO.
	// It warns, once per flag, that the form is deprecated.
	out.Reset()
	var logged bytes.Buffer
	if err := run(ctx, []string{"ingest", "--tucao-backfill", "--from", "20260110", "--to", "2026-01-10"}, &out, &logged); err != nil {
		t.Fatalf("backfill: %v (%s)", err, out.String())
	}
	if !strings.Contains(out.String(), "backfill 2026-01-10..2026-01-10 ") || !strings.Contains(out.String(), "3 posts read") {
		t.Fatalf("backfill of January 10th given as YYYYMMDD: %q", out.String())
	}
	if n := strings.Count(logged.String(), "YYYYMMDD days are deprecated"); n != 1 || !strings.Contains(logged.String(), `"write":"2026-01-10"`) {
		t.Fatalf("want one deprecation warning, for --from, saying what to write; log: %s", logged.String())
	}
	var stderr bytes.Buffer
	if err := run(ctx, []string{"ingest", "--tucao-backfill", "--from", "20260112", "--to", "20260111"}, io.Discard, &stderr); err == nil || !strings.Contains(err.Error()+stderr.String(), "before --from") {
		t.Fatalf("--to before --from: %v %s", err, stderr.String())
	}
}
