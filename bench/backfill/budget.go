package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
)

// budgetWindow is the service's rate-limit window.
const budgetWindow = time.Minute

// errBudgetRunOver ends the backfill once the run's time is up.
var errBudgetRunOver = errors.New("budget run over")

// requestLog is the client's HTTP transport: it stamps every request with
// the run's clock as it leaves, records the answer's status and, once the
// run's time is up, cancels the backfill instead of sending. The fake is
// left as it is; the client's side is where kefu decides when to send.
type requestLog struct {
	clock  tucao.Clock
	next   http.RoundTripper
	end    time.Time
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	sent     []time.Time
	statuses map[int]int
	failures int // no HTTP answer
}

func (l *requestLog) RoundTrip(req *http.Request) (*http.Response, error) {
	now := l.clock.Now()
	if !now.Before(l.end) {
		l.cancel(errBudgetRunOver)
		return nil, errBudgetRunOver
	}
	l.mu.Lock()
	l.sent = append(l.sent, now)
	l.mu.Unlock()
	resp, err := l.next.RoundTrip(req)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failures++
		return nil, err
	}
	l.statuses[resp.StatusCode]++
	return resp, nil
}

// waitLog wraps the client's limiter to see how long it held requests
// back: a client that keeps up with the budget spends most of the run
// there, and the rest is what fetching and publishing cost.
type waitLog struct {
	limiter tucao.Limiter
	clock   tucao.Clock
	end     time.Time // waiting past the run's end is not counted

	mu      sync.Mutex
	waiting time.Duration
}

func (w *waitLog) Wait(ctx context.Context) error {
	start := w.clock.Now()
	err := w.limiter.Wait(ctx)
	stop := w.clock.Now()
	if stop.After(w.end) {
		stop = w.end
	}
	if stop.After(start) {
		w.mu.Lock()
		w.waiting += stop.Sub(start)
		w.mu.Unlock()
	}
	return err
}

type budgetResult struct {
	store     string
	clock     string
	perMinute int
	minutes   int
	posts     int
	wall      time.Duration
	handling  time.Duration // wall time the poller spent publishing posts
	created   int
	fakeSeen  int // requests the fake received
	log       *requestLog
	waits     *waitLog
	stats     windowStats
}

func runBudget(ctx context.Context, o options) (res budgetResult, err error) {
	clock := newClock(o.clock)
	fake := tucaotest.New(tucaotest.Options{RateLimit: o.perMinute, Clock: clock})
	defer fake.Close()
	// One page more than the run can fetch, so the client always has the
	// next one to ask for: the limiter sends the request after the
	// perMinute·minutes allowed ones only after the run's end.
	n := (o.budgetMinutes*o.perMinute + 1) * tucao.MaxCount
	posts := fake.Generate(n, o.seed)
	from, to, err := window(posts)
	if err != nil {
		return res, err
	}

	p, err := startPipeline(ctx, o)
	if err != nil {
		return res, fmt.Errorf("budget: %w", err)
	}
	defer func() { err = errors.Join(err, p.close(context.WithoutCancel(ctx))) }()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	reqs := &requestLog{clock: clock, next: http.DefaultTransport, cancel: cancel, statuses: make(map[int]int)}
	waits := &waitLog{limiter: tucao.NewWindowLimiter(o.perMinute, clock), clock: clock}
	cfg := fake.ClientConfig()
	cfg.HTTPClient = &http.Client{Transport: reqs, Timeout: tucao.DefaultTimeout}
	cfg.Limiter = waits
	client, err := tucao.New(cfg)
	if err != nil {
		return res, fmt.Errorf("budget: %w", err)
	}
	lister := &timedLister{client: client}
	poller, err := p.poller(lister, fake.ProductID())
	if err != nil {
		return res, fmt.Errorf("budget: %w", err)
	}

	runtime.GC() // generating the posts left garbage: the run should not collect it
	stopProfile, err := startProfile(o, "budget")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, stopProfile()) }()
	run := time.Duration(o.budgetMinutes) * budgetWindow
	wallStart, start := time.Now(), clock.Now()
	reqs.end, waits.end = start.Add(run), start.Add(run)
	if o.clock == clockReal {
		// The limiter's last wait would otherwise outlast the run.
		var stop context.CancelFunc
		runCtx, stop = context.WithDeadlineCause(runCtx, wallStart.Add(run), errBudgetRunOver)
		defer stop()
	}
	pr, err := poller.Backfill(runCtx, from, to)
	_ = stopProfile() // the measured part ends here; the deferred call reports an error
	res = budgetResult{
		store: storeName(o, p.schema), clock: o.clock, perMinute: o.perMinute, minutes: o.budgetMinutes, posts: n,
		wall: time.Since(wallStart), handling: lister.handling, created: pr.Created, fakeSeen: fake.RequestCount(), log: reqs, waits: waits,
	}
	switch {
	case err == nil:
		return res, fmt.Errorf("budget: the backfill of %d posts finished within the run: it was not limited by the budget", n)
	case !errors.Is(context.Cause(runCtx), errBudgetRunOver):
		return res, fmt.Errorf("budget: backfill: %w", err)
	}
	reqs.mu.Lock()
	sent := append([]time.Time(nil), reqs.sent...)
	reqs.mu.Unlock()
	res.stats = budgetStats(sent, start, reqs.end, budgetWindow)
	return res, nil
}

// windowStats describes requests in 60-second windows over a run.
type windowStats struct {
	requests int
	// perMinute counts the requests of each consecutive minute of the run.
	perMinute []int
	// mean is the average count of a sliding window over the run, every
	// window that fits weighted alike: the requests per minute the run
	// sustained.
	mean float64
	// min and max are the fewest and most requests any window that fits
	// in the run holds, wherever it starts.
	min, max int
}

// budgetStats computes windowStats of the send times in [start, end) for
// windows of length w. The windows are half-open, [s, s+w), as the fake
// counts them.
func budgetStats(sent []time.Time, start, end time.Time, w time.Duration) windowStats {
	var ts []time.Time
	for _, t := range sent {
		if !t.Before(start) && t.Before(end) {
			ts = append(ts, t)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	st := windowStats{requests: len(ts)}
	// countFrom is the number of requests in [s, s+w).
	countFrom := func(s time.Time) int {
		lo := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(s) })
		hi := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(s.Add(w)) })
		return hi - lo
	}
	for m := start; !m.Add(w).After(end); m = m.Add(w) {
		st.perMinute = append(st.perMinute, countFrom(m))
	}
	last := end.Add(-w) // the latest start of a window inside the run
	if last.Before(start) {
		return st
	}
	// A window's count only rises when its end passes a request and
	// only falls when its start passes one, so the extremes are at the
	// run's start, at a request's time or just after it.
	st.min, st.max = countFrom(start), countFrom(start)
	for _, t := range ts {
		for _, s := range []time.Time{t, t.Add(time.Nanosecond)} {
			if s.After(last) {
				continue
			}
			c := countFrom(s)
			st.min, st.max = min(st.min, c), max(st.max, c)
		}
	}
	// Every request sits in the windows starting in (t-w, t]; the mean
	// count is the total of those spans, clipped to the run, over the
	// span of window starts.
	span := last.Sub(start)
	if span == 0 {
		st.mean = float64(st.min)
		return st
	}
	var covered time.Duration
	for _, t := range ts {
		lo, hi := t.Add(-w), t
		if lo.Before(start) {
			lo = start
		}
		if hi.After(last) {
			hi = last
		}
		if hi.After(lo) {
			covered += hi.Sub(lo)
		}
	}
	st.mean = float64(covered) / float64(span)
	return st
}

func (r budgetResult) print(w io.Writer) {
	budget := float64(r.perMinute)
	fmt.Fprintf(w, "budget (%d requests/min on the fake and in the client), store %s, clock %s\n", r.perMinute, r.store, r.clock)
	fmt.Fprintf(w, "  run                    %d min on the clock, %.1f s wall\n", r.minutes, r.wall.Seconds())
	fmt.Fprintf(w, "  backfill               %d posts published of %d on the fake\n", r.created, r.posts)
	fmt.Fprintf(w, "  requests               %d sent by the client, %d received by the fake\n", r.stats.requests, r.fakeSeen)
	minutes := make([]string, len(r.stats.perMinute))
	for i, c := range r.stats.perMinute {
		minutes[i] = fmt.Sprint(c)
	}
	perMinuteMin, perMinuteSum := 0, 0
	for i, c := range r.stats.perMinute {
		perMinuteSum += c
		if i == 0 || c < perMinuteMin {
			perMinuteMin = c
		}
	}
	fmt.Fprintf(w, "  per minute             %s (mean %.1f %%, min %.0f %%)\n", strings.Join(minutes, " "),
		100*float64(perMinuteSum)/float64(max(len(r.stats.perMinute), 1))/budget, 100*float64(perMinuteMin)/budget)
	fmt.Fprintf(w, "  budget used, sliding 60 s windows: mean %.1f %%, min %.0f %%, max %.0f %% (%d requests)\n",
		100*r.stats.mean/budget, 100*float64(r.stats.min)/budget, 100*float64(r.stats.max)/budget, r.stats.max)
	verdict := "ok"
	switch {
	case float64(r.stats.max) > budget:
		verdict = "OVER THE BUDGET"
	case r.stats.mean < 0.95*budget:
		verdict = "below the 95 % target"
	}
	fmt.Fprintf(w, "  target ≥ 95 %%, never above 100 %%: %s\n", verdict)
	r.log.mu.Lock()
	statuses := make([]string, 0, len(r.log.statuses))
	codes := make([]int, 0, len(r.log.statuses))
	for code := range r.log.statuses {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	for _, code := range codes {
		statuses = append(statuses, fmt.Sprintf("%d×%d", r.log.statuses[code], code))
	}
	rejected, failures := r.log.statuses[http.StatusTooManyRequests], r.log.failures
	r.log.mu.Unlock()
	fmt.Fprintf(w, "  answers                %s; 429 answered: %d; no answer: %d\n", strings.Join(statuses, ", "), rejected, failures)
	r.waits.mu.Lock()
	waiting := r.waits.waiting
	r.waits.mu.Unlock()
	run := time.Duration(r.minutes) * budgetWindow
	fmt.Fprintf(w, "  client                 of the %.0f s on the clock, %.1f s waiting on its limiter, %.1f s not (publishing posts took %.1f s of wall time)\n",
		run.Seconds(), waiting.Seconds(), (run - waiting).Seconds(), r.handling.Seconds())
}
