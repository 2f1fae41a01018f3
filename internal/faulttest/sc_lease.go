package faulttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

// pausedLeader: two estimator processes poll the fake's queue; the one
// holding the lease is stopped with SIGSTOP for LeaderPause (past the
// lease's 15 s TTL), the other takes over, and the stopped one is resumed
// with SIGCONT, mid-whatever it was doing. No write of the paused holder
// may land after its successor's: the fence of every key of kefu_state the
// estimators write never goes down.
func (sc *scenario) pausedLeader(ctx context.Context) Row {
	wx, api, err := fakeWeChat()
	if err != nil {
		return Row{Err: err}
	}
	defer wx.Close()
	defer api.Close()
	// getwaitcase answers after 2 s and the estimators poll every second:
	// a holder spends most of its time inside a poll, so the SIGSTOP
	// lands mid-poll, the case fencing is for — the frozen holder resumes
	// with a poll to finish and its state to write.
	wx.SetLatency(wechattest.MethodWaitCase, 2*time.Second)
	since := time.Now()
	env := map[string]string{"KEFU_QUEUE_POLL_INTERVAL": "1s"}
	a, err := sc.startRole(ctx, roleOpts{name: "estimator-a", role: "estimator", wechat: api.URL, env: env})
	if err != nil {
		return Row{Err: err}
	}
	obs, err := newObserver(sc.cluster.URLs(), "", nil, "", since)
	if err != nil {
		return Row{Err: err}
	}
	defer obs.close()
	lockKey := "estimator-" + events.Token(appID)
	keys := []string{"estimator." + events.Token(appID), "queue." + events.Token(appID)}
	watch, err := obs.watchFenced(ctx, bus.BucketState, keys)
	if err != nil {
		return Row{Err: err}
	}
	watching := true
	defer func() {
		if watching {
			watch.stop()
		}
	}()
	if _, err := waitUntil(ctx, time.Minute, 200*time.Millisecond, func() (bool, string) {
		h, err := obs.leaseHolder(ctx, lockKey)
		return err == nil && holderIs(h, a), fmt.Sprintf("lease holder %q, %v", h, err)
	}); err != nil {
		return Row{Err: fmt.Errorf("estimator A never took the lease: %w", err)}
	}
	b, err := sc.startRole(ctx, roleOpts{name: "estimator-b", role: "estimator", wechat: api.URL, env: env})
	if err != nil {
		return Row{Err: err}
	}
	// A polls and writes (B, without the lease, does not): the fence
	// check below needs the holder's writes before the pause.
	if _, err := waitUntil(ctx, time.Minute, 200*time.Millisecond, func() (bool, string) {
		n := watch.count()
		return n >= 2, fmt.Sprintf("%d writes of the holder seen", n)
	}); err != nil {
		return Row{Err: fmt.Errorf("estimator A does not write its state: %w", err)}
	}
	pid := a.pid()
	sc.logf("SIGSTOP estimator A (pid %d) for %s", pid, sc.cfg.LeaderPause)
	if err := pause(pid); err != nil {
		return Row{Err: err}
	}
	stopped := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			resume(pid)
		}
	}()
	var takeover time.Duration
	if _, err := waitUntil(ctx, sc.cfg.LeaderPause+time.Minute, 200*time.Millisecond, func() (bool, string) {
		h, err := obs.leaseHolder(ctx, lockKey)
		return err == nil && holderIs(h, b), fmt.Sprintf("lease holder %q, %v", h, err)
	}); err != nil {
		return Row{Err: fmt.Errorf("estimator B never took over: %w", err)}
	}
	takeover = time.Since(stopped)
	if err := sleep(ctx, time.Until(stopped.Add(sc.cfg.LeaderPause))); err != nil {
		return Row{Err: err}
	}
	sc.logf("SIGCONT estimator A; B took over %s after the stop", takeover.Round(100*time.Millisecond))
	if err := resume(pid); err != nil {
		return Row{Err: err}
	}
	resumed = true
	// Long enough for A's pending poll and renewals to run into the fence,
	// and for B to go on writing.
	if err := sleep(ctx, 5*time.Second); err != nil {
		return Row{Err: err}
	}
	watching = false
	recs := watch.stop()
	row := Row{Sent: len(recs)}
	var fences int
	row.Stored, row.Doubled, fences = fenceOrder(recs)
	lostLines := countLines(a.logPath, "lease lost to another replica")
	row.Detail = fmt.Sprintf("A stopped %s, B took over after %s; %d fences wrote; stale writes landed %d; A resumed mid-poll and refused to write (log: lease lost) %d times",
		sc.cfg.LeaderPause, takeover.Round(100*time.Millisecond), fences, row.Doubled, lostLines)
	switch {
	case fences < 2:
		row.Err = fmt.Errorf("writes under %d fences only: the takeover did not write (the check proves nothing)", fences)
	case !a.running():
		row.Err = errors.New("estimator A exited after SIGCONT: " + a.logTail(500))
	}
	return row
}

// leaseHolder reads the holder of a lease in kefu_locks ("" when free).
func (o *observer) leaseHolder(ctx context.Context, key string) (string, error) {
	kv, err := o.js.KeyValue(ctx, bus.BucketLocks)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return "", err
	}
	var rec struct {
		Holder string `json:"holder"`
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return "", err
	}
	return rec.Holder, nil
}

// holderIs tells whether a lease holder name (module-host-pid) is p's.
func holderIs(holder string, p *process) bool {
	return strings.HasSuffix(holder, fmt.Sprintf("-%d", p.pid()))
}

// countLines counts the lines of a file that contain s.
func countLines(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// fenceOrder checks the records of each key in stream order: a record
// whose fence is below one written before it on the same key is a stale
// holder's write that landed after its successor's. fences is the number
// of distinct fences that wrote.
func fenceOrder(recs []fencedRecord) (inOrder, stale, fences int) {
	maxFence := map[string]uint64{}
	seen := map[uint64]bool{}
	for _, r := range recs {
		if r.fence < maxFence[r.key] {
			stale++
		} else {
			inOrder++
		}
		maxFence[r.key] = max(maxFence[r.key], r.fence)
		seen[r.fence] = true
	}
	return inOrder, stale, len(seen)
}
