package faulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback"
)

// tucaoFake is a fake Tucao with a product id of its own, so that the
// scenario's Tucao cursor in the shared kefu_cursors bucket is fresh, and
// a marker in every post's content, so that the scenario finds its posts.
func tucaoFake() (*tucaotest.Server, string) {
	n, _ := rand.Int(rand.Reader, big.NewInt(9e8))
	fake := tucaotest.New(tucaotest.Options{ProductID: fmt.Sprint(1e8 + n.Int64())})
	b := make([]byte, 4)
	rand.Read(b)
	return fake, "FT" + hex.EncodeToString(b)
}

func tucaoEnv(fake *tucaotest.Server, poll time.Duration) map[string]string {
	env := map[string]string{
		"KEFU_TUCAO_PRODUCT_ID": fake.ProductID(),
		"KEFU_TUCAO_SECRET":     fake.Secret(),
		"KEFU_TUCAO_API_BASE":   fake.URL(),
	}
	if poll > 0 {
		env["KEFU_TUCAO_POLL_INTERVAL"] = poll.String()
	}
	return env
}

// postCheck compares the posts a fake holds (want) with the store and the
// stream once the feedback role's consumer is idle.
func (sc *scenario) postCheck(ctx context.Context, obs *observer, feedbackURL, marker string, want map[string]bool) (stored, lost, doubled int, err error) {
	note, err := waitUntil(ctx, sc.cfg.CatchUp, time.Second, func() (bool, string) {
		got, err := obs.storedPosts(ctx, feedbackURL, marker)
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for id := range want {
			if got[id] > 0 {
				n++
			}
		}
		return n == len(want), fmt.Sprintf("%d of %d posts stored", n, len(want))
	})
	if err != nil && ctx.Err() != nil {
		return 0, 0, 0, err
	}
	if err != nil {
		sc.logf("posts not all stored: %s", note)
	}
	if _, err := waitUntil(ctx, sc.cfg.CatchUp, time.Second, func() (bool, string) {
		return obs.idle(ctx, []consumerRef{{events.StreamTucao, feedback.DurablePosts}})
	}); err != nil {
		return 0, 0, 0, err
	}
	got, err := obs.storedPosts(ctx, feedbackURL, marker)
	if err != nil {
		return 0, 0, 0, err
	}
	published, err := obs.publishedPosts(ctx, want)
	if err != nil {
		return 0, 0, 0, err
	}
	for id := range want {
		switch {
		case got[id] == 0:
			lost++
		default:
			stored++
		}
		if got[id] > 1 || published[id] > 1 {
			doubled++
		}
	}
	return stored, lost, doubled, nil
}

// tucaoDowntime: Tucao holds TucaoBefore posts, ingest and feedback read
// them; ingest stops (SIGTERM); Tucao gets TucaoDowntimePosts posts; ingest
// starts again and must bring every post to the store within Tucao's
// budget of 100 requests a minute.
func (sc *scenario) tucaoDowntime(ctx context.Context) Row {
	fake, marker := tucaoFake()
	defer fake.Close()
	want := map[string]bool{}
	now := time.Now()
	for i := range sc.cfg.TucaoBefore {
		at := now.Add(-72*time.Hour + time.Duration(i)*time.Minute)
		want[fake.AddPost(tucaotest.PostInput{Content: fmt.Sprintf("%s 停机之前的反馈 %d", marker, i), CreatedAt: at}).ID] = true
	}
	poll := 60 * time.Second
	if sc.cfg.TucaoDowntimePosts < 1000 {
		poll = 5 * time.Second // the short version: a scaled backlog, a shorter period
	}
	fb, err := sc.startRole(ctx, roleOpts{name: "feedback", role: "feedback"})
	if err != nil {
		return Row{Err: err}
	}
	ing, err := sc.startRole(ctx, roleOpts{name: "ingest", role: "ingest", env: tucaoEnv(fake, poll)})
	if err != nil {
		return Row{Err: err}
	}
	obs, err := newObserver(sc.cluster.URLs(), "", nil, "", now)
	if err != nil {
		return Row{Err: err}
	}
	defer obs.close()
	feedbackURL := "http://" + fb.addr
	before := len(want)
	if _, err := waitUntil(ctx, sc.cfg.CatchUp, time.Second, func() (bool, string) {
		got, err := obs.storedPosts(ctx, feedbackURL, marker)
		if err != nil {
			return false, err.Error()
		}
		return len(got) >= before, fmt.Sprintf("%d of %d posts stored before the downtime", len(got), before)
	}); err != nil {
		return Row{Err: err}
	}
	sc.logf("%d posts stored; SIGTERM ingest", before)
	if err := ing.term(30 * time.Second); err != nil {
		return Row{Err: err}
	}
	for i := range sc.cfg.TucaoDowntimePosts {
		want[fake.AddPost(tucaotest.PostInput{Content: fmt.Sprintf("%s 停机期间的反馈 %d", marker, i)}).ID] = true
	}
	sc.logf("Tucao got %d posts while ingest was stopped; starting ingest", sc.cfg.TucaoDowntimePosts)
	requestsBefore := fake.RequestCount()
	restarted := time.Now()
	if err := sc.restart(ctx, ing); err != nil {
		return Row{Err: err}
	}
	row := Row{Sent: len(want)}
	row.Stored, row.Lost, row.Doubled, err = sc.postCheck(ctx, obs, feedbackURL, marker, want)
	if err != nil {
		row.Err = err
		return row
	}
	caughtUp := time.Since(restarted)
	times := fake.RequestTimes()
	most := maxPerMinute(times)
	row.Detail = fmt.Sprintf("%d posts while stopped; all stored %s after the restart, %d requests, at most %d in 60 s (budget %d)",
		sc.cfg.TucaoDowntimePosts, caughtUp.Round(time.Second), len(times)-requestsBefore, most, tucao.DefaultRequestsPerMinute)
	if most > tucao.DefaultRequestsPerMinute {
		row.Err = fmt.Errorf("%d Tucao requests within 60 s, over the budget of %d", most, tucao.DefaultRequestsPerMinute)
	}
	return row
}

// maxPerMinute is the most requests in any 60-second window.
func maxPerMinute(times []time.Time) int {
	sorted := append([]time.Time(nil), times...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
	most, j := 0, 0
	for i := range sorted {
		for sorted[i].Sub(sorted[j]) >= time.Minute {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// backfill: Tucao holds BackfillPosts posts on each of three days;
// `kefu ingest --tucao-backfill --from D --to D` for the middle one must
// bring exactly that day's posts to the store, once, and no other day's.
func (sc *scenario) backfill(ctx context.Context) Row {
	fake, marker := tucaoFake()
	defer fake.Close()
	cst := time.FixedZone("CST", 8*3600)
	y, m, d := time.Now().In(cst).AddDate(0, 0, -3).Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, cst)
	want, others := map[string]bool{}, map[string]bool{}
	n := sc.cfg.BackfillPosts
	for offset := -1; offset <= 1; offset++ {
		start := day.AddDate(0, 0, offset)
		for i := range n {
			at := start.Add(time.Duration(i) * 24 * time.Hour / time.Duration(n))
			id := fake.AddPost(tucaotest.PostInput{Content: fmt.Sprintf("%s 历史反馈 %d/%d", marker, offset, i), CreatedAt: at}).ID
			if offset == 0 {
				want[id] = true
			} else {
				others[id] = true
			}
		}
	}
	fb, err := sc.startRole(ctx, roleOpts{name: "feedback", role: "feedback"})
	if err != nil {
		return Row{Err: err}
	}
	obs, err := newObserver(sc.cluster.URLs(), "", nil, "", time.Now())
	if err != nil {
		return Row{Err: err}
	}
	defer obs.close()

	env, err := sc.roleEnv(roleOpts{name: "backfill", role: "ingest", env: tucaoEnv(fake, 0)})
	if err != nil {
		return Row{Err: err}
	}
	date := day.Format("2006-01-02")
	cmd := exec.CommandContext(ctx, sc.bin, "ingest", "--tucao-backfill", "--from", date, "--to", date)
	cmd.Env = roleEnv(env)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err = cmd.Run()
	took := time.Since(began)
	_ = writeFile(filepath.Join(sc.dir, "backfill.log"), out.Bytes())
	if err != nil {
		return Row{Err: fmt.Errorf("kefu ingest --tucao-backfill: %w: %s", err, strings.TrimSpace(out.String()))}
	}
	summary := lastLine(out.String())
	sc.logf("%s", summary)

	row := Row{Sent: len(want)}
	row.Stored, row.Lost, row.Doubled, err = sc.postCheck(ctx, obs, "http://"+fb.addr, marker, want)
	if err != nil {
		row.Err = err
		return row
	}
	leaked, err := obs.publishedPosts(ctx, others)
	if err != nil {
		row.Err = err
		return row
	}
	row.Detail = fmt.Sprintf("day %s in %s (%q); posts of the days around it published: %d", date, took.Round(100*time.Millisecond), summary, len(leaked))
	if len(leaked) > 0 {
		row.Err = errors.New("the backfill published posts of other days")
	}
	return row
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
