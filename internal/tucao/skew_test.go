package tucao_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
)

// answers records the body status of every answer the client received.
type answers struct {
	mu       sync.Mutex
	statuses []int
}

func (a *answers) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var st struct {
		Status int `json:"status"`
	}
	_ = json.Unmarshal(body, &st)
	a.mu.Lock()
	a.statuses = append(a.statuses, st.Status)
	a.mu.Unlock()
	return resp, nil
}

func (a *answers) seen() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.statuses...)
}

// skewedFake starts a fake whose clock reads start and a client whose clock
// reads start+hostOffset, each on its own fake clock, and records every
// skew the client reports.
func skewedFake(t *testing.T, hostOffset time.Duration, opts tucaotest.Options) (*tucaotest.Server, *tucao.Client, *tucao.FakeClock, *tucao.FakeClock, func() []time.Duration) {
	srv, c, sc, hc, rep, _ := skewedFakeWithAnswers(t, hostOffset, opts)
	return srv, c, sc, hc, rep
}

func skewedFakeWithAnswers(t *testing.T, hostOffset time.Duration, opts tucaotest.Options) (*tucaotest.Server, *tucao.Client, *tucao.FakeClock, *tucao.FakeClock, func() []time.Duration, *answers) {
	t.Helper()
	serverClock := tucao.NewFakeClock(start)
	opts.Clock = serverClock
	srv := tucaotest.New(opts)
	t.Cleanup(srv.Close)
	hostClock := tucao.NewFakeClock(start.Add(hostOffset))
	var mu sync.Mutex
	var reported []time.Duration
	cfg := srv.ClientConfig()
	cfg.Clock = hostClock
	ans := &answers{}
	cfg.HTTPClient = &http.Client{Transport: ans, Timeout: 10 * time.Second}
	cfg.OnClockSkew = func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, d)
	}
	c, err := tucao.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, serverClock, hostClock, func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), reported...)
	}, ans
}

func near(got, want time.Duration) bool {
	d := got - want
	return d <= tucao.SkewTolerance && d >= -tucao.SkewTolerance
}

func TestClockSkewIsMeasuredFromDateAndCorrected(t *testing.T) {
	tests := []struct {
		name string
		// hostOffset is how far the host's clock is from the server's.
		hostOffset time.Duration
		// rejected is how many requests the server refuses as stale
		// before the correction: one when the skew exceeds its 300 s.
		rejected int
	}{
		{"host ten minutes slow", -10 * time.Minute, 1},
		{"host an hour fast", time.Hour, 1},
		{"host two days slow", -48 * time.Hour, 1},
		{"host 90 s slow: accepted, corrected, worth a warning", -90 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, _, _, reported, ans := skewedFakeWithAnswers(t, tt.hostOffset, tucaotest.Options{})
			for range 250 {
				srv.AddPost(tucaotest.PostInput{Content: "反馈"})
			}
			var seen int
			err := c.Iterate(context.Background(), tucao.ListOptions{Count: 100}, func(tucao.Post) (bool, error) {
				seen++
				return true, nil
			})
			if err != nil {
				t.Fatalf("Iterate with a skewed host clock: %v", err)
			}
			if seen != 250 {
				t.Errorf("saw %d posts, want 250", seen)
			}
			if want := 3 + tt.rejected; srv.RequestCount() != want {
				t.Errorf("%d requests, want %d (3 pages, %d refused as stale)", srv.RequestCount(), want, tt.rejected)
			}
			// The refusal was the server's own stale-timestamp answer.
			want := []int{0, 0, 0}
			if tt.rejected == 1 {
				want = []int{tucao.StatusStaleTimestamp, 0, 0, 0}
			}
			if got := ans.seen(); !slices.Equal(got, want) {
				t.Errorf("answers %v, want %v", got, want)
			}
			if got := c.ClockSkew(); !near(got, -tt.hostOffset) {
				t.Errorf("ClockSkew() = %v, want about %v", got, -tt.hostOffset)
			}
			r := reported()
			if len(r) != 1 || !near(r[0], -tt.hostOffset) {
				t.Errorf("OnClockSkew got %v, want one report of about %v", r, -tt.hostOffset)
			}
			if abs(r[0]) <= tucao.SkewWarning {
				t.Errorf("a skew of %v is under SkewWarning %v: callers would not warn", r[0], tucao.SkewWarning)
			}
		})
	}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestClockSkewWithinToleranceChangesNothing(t *testing.T) {
	srv, c, _, _, reported := skewedFake(t, 700*time.Millisecond, tucaotest.Options{})
	srv.AddPost(tucaotest.PostInput{Content: "反馈"})
	for range 3 {
		if _, err := c.ListPosts(context.Background(), tucao.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if c.ClockSkew() != 0 || len(reported()) != 0 {
		t.Errorf("ClockSkew() = %v, reports %v; a skew under the Date header's resolution must change nothing", c.ClockSkew(), reported())
	}
	if srv.RequestCount() != 3 {
		t.Errorf("%d requests, want 3", srv.RequestCount())
	}
}

func TestClockSkewFollowsAHostClockThatJumps(t *testing.T) {
	srv, c, serverClock, hostClock, reported := skewedFake(t, 0, tucaotest.Options{})
	srv.AddPost(tucaotest.PostInput{Content: "反馈"})
	ctx := context.Background()
	if _, err := c.ListPosts(ctx, tucao.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	// The host's clock jumps 20 minutes ahead (a bad NTP step), then
	// both clocks run on together.
	hostClock.Advance(20 * time.Minute)
	if _, err := c.ListPosts(ctx, tucao.ListOptions{}); err != nil {
		t.Fatalf("poll after the host clock jumped: %v", err)
	}
	if !near(c.ClockSkew(), -20*time.Minute) {
		t.Errorf("ClockSkew() = %v after the jump, want about -20m", c.ClockSkew())
	}
	// Later the host's clock is put right: the correction follows.
	serverClock.Advance(time.Hour)
	hostClock.Set(serverClock.Now())
	if _, err := c.ListPosts(ctx, tucao.ListOptions{}); err != nil {
		t.Fatalf("poll after the host clock was put right: %v", err)
	}
	if !near(c.ClockSkew(), 0) {
		t.Errorf("ClockSkew() = %v after the host clock was put right, want about 0", c.ClockSkew())
	}
	if r := reported(); len(r) != 2 {
		t.Errorf("OnClockSkew got %v, want two reports (the jump and the fix)", r)
	}
	// 1 + (refused, re-signed) + (refused, re-signed).
	if srv.RequestCount() != 5 {
		t.Errorf("%d requests, want 5", srv.RequestCount())
	}
}

func TestStaleTimestampIsRetriedOnlyOnce(t *testing.T) {
	// A server whose answers tell no time cannot be corrected for: the
	// stale timestamp stays a permanent error after one request.
	srv, c, _, _, reported := skewedFake(t, -10*time.Minute, tucaotest.Options{OmitDate: true})
	_, err := c.ListPosts(context.Background(), tucao.ListOptions{})
	apiErr, ok := errors.AsType[*tucao.APIError](err)
	if !ok || apiErr.Status != tucao.StatusStaleTimestamp {
		t.Fatalf("ListPosts = %v, want the server's stale-timestamp error", err)
	}
	if srv.RequestCount() != 1 || len(reported()) != 0 || c.ClockSkew() != 0 {
		t.Errorf("%d requests, reports %v, skew %v; want 1, none, 0", srv.RequestCount(), reported(), c.ClockSkew())
	}
}
