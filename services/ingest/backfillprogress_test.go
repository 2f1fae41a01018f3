package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/services/ingest"
)

func TestTucaoBackfillReportsDaysAndPostsAsItGoes(t *testing.T) {
	h := newTucaoHarness(t)
	cst := time.FixedZone("CST", 8*3600)
	clock := tucao.NewFakeClock(time.Date(2026, 1, 1, 12, 0, 0, 0, cst))
	h.fake.SetClock(clock)
	for day := 1; day <= 4; day++ { // January 1st to 4th, 10 posts a day
		for i := 0; i < 10; i++ {
			h.fake.AddPost(tucaotest.PostInput{Content: "历史反馈", CreatedAt: time.Date(2026, 1, day, 9, i, 0, 0, cst)})
		}
	}
	clock.Set(time.Date(2026, 1, 20, 12, 0, 0, 0, cst))
	client, _ := tucao.New(h.fake.ClientConfig())
	p, _ := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: h.fake.ProductID(), Holder: "backfill"}, client, h.bus, h.cursors, h.locks, nil, nil)
	p.SetClock(clock.Now)

	var seen []ingest.BackfillProgress
	res, err := p.BackfillWithProgress(context.Background(), "2026-01-02", "2026-01-04", func(bp ingest.BackfillProgress) { seen = append(seen, bp) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 30 || len(seen) != 30 {
		t.Fatalf("published %d posts with %d progress reports, want 30 and 30", res.Created, len(seen))
	}
	for i, bp := range seen {
		if bp.Days.Count() != 3 || bp.Result.Seen != i+1 {
			t.Fatalf("report %d: %d days, %d posts seen; want 3 days, %d posts", i, bp.Days.Count(), bp.Result.Seen, i+1)
		}
		if i > 0 && bp.DaysDone < seen[i-1].DaysDone {
			t.Fatalf("days done went back from %d to %d", seen[i-1].DaysDone, bp.DaysDone)
		}
	}
	// Newest first: the 4th is read first (no day done yet), the 2nd last
	// (the 4th and the 3rd done).
	if first, last := seen[0].DaysDone, seen[len(seen)-1].DaysDone; first != 0 || last != 2 {
		t.Fatalf("days done from %d to %d, want from 0 to 2", first, last)
	}
}
