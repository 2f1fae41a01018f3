package console

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readEvents reads server-sent events from an open stream into a channel.
func readEvents(t *testing.T, resp *http.Response) <-chan sseEvent {
	t.Helper()
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				ch <- ev
				ev = sseEvent{}
			}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return sseEvent{}
}

func openStream(t *testing.T, srv *httptest.Server, cookie *http.Cookie) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/console/api/events", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp
}

func TestEventStreamStartsWithTheStateThenSendsEveryChange(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close) // after the streams end (cleanups run last first)
	cookie, _ := signIn(t, s.Handler(), readTok)
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s.hub.update(func(st *state, o *ops) {
		st.applyKF(events.SubjectQueueJoined, mustJSON(t, map[string]any{"openid": "o-before", "occurred_at": at}), o)
	})

	evs := readEvents(t, openStream(t, srv, cookie))
	first := next(t, evs)
	if first.name != "state" {
		t.Fatalf("first event %q", first.name)
	}
	var snap Snapshot
	if err := json.Unmarshal([]byte(first.data), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Waiting) != 1 || snap.Waiting[0].OpenID != "o-before" || snap.Seq != 1 {
		t.Fatalf("state %+v", snap)
	}

	est := events.WaitEstimated{Meta: events.Meta{OccurredAt: at.Add(time.Second)}, OpenID: "o-before", Position: 1, WaitSeconds: 90, WaitP90Seconds: 200, Model: "kefu"}
	s.hub.update(func(st *state, o *ops) { st.applyKF(events.SubjectWaitEstimated, mustJSON(t, est), o) })
	s.hub.update(func(st *state, o *ops) { st.sessionCreated("o-before", "kf1@test", at.Add(80*time.Second), o) })

	d1 := next(t, evs)
	var got delta
	if err := json.Unmarshal([]byte(d1.data), &got); err != nil || d1.name != "d" {
		t.Fatalf("%s %s: %v", d1.name, d1.data, err)
	}
	if got.Seq != 2 || len(got.Ops) != 1 || got.Ops[0].C != "waiting" || got.Ops[0].K != "o-before" || got.T == 0 {
		t.Fatalf("estimate delta %+v", got)
	}
	if w := got.Ops[0].V.(map[string]any); w["wait_seconds"] != 90.0 || w["wait_p90_seconds"] != 200.0 || w["estimated"] != true {
		t.Errorf("estimate delta value %v", w)
	}
	d2 := next(t, evs)
	if !strings.Contains(d2.data, `"c":"waiting","k":"o-before","del":true`) || !strings.Contains(d2.data, `"c":"served","k":"o-before"`) ||
		!strings.Contains(d2.data, `"c":"accuracy"`) {
		t.Errorf("served delta %s", d2.data)
	}
}

func TestEventStreamIsBounded(t *testing.T) {
	s := newTestService(t, Config{MaxStreams: 2}, nil)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close) // after the streams end (cleanups run last first)
	cookie, _ := signIn(t, s.Handler(), readTok)
	for range 2 {
		next(t, readEvents(t, openStream(t, srv, cookie)))
	}
	req, _ := http.NewRequest("GET", srv.URL+"/console/api/events", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d", resp.StatusCode)
	}
}

// A stream that does not read is dropped once it is clientBuffer changes
// behind; the others go on.
func TestSlowStreamIsDroppedNotWaitedFor(t *testing.T) {
	h := newHub(newState(time.Minute), 10)
	slow, _, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	fast, _, _ := h.subscribe()
	change := func(i int) {
		h.update(func(st *state, o *ops) { st.leave("o-"+string(rune('a'+i%26)), time.Now(), 1, "left", o) })
	}
	for i := range clientBuffer {
		change(i)
		<-fast.frames
	}
	select {
	case <-slow.gone:
		t.Fatal("dropped while within its buffer")
	default:
	}
	change(0)
	select {
	case <-slow.gone:
	default:
		t.Fatal("a stream a buffer behind was not dropped")
	}
	select {
	case <-fast.gone:
		t.Fatal("the fast stream was dropped")
	case f := <-fast.frames:
		if !strings.Contains(string(f), "event: d") {
			t.Errorf("frame %q", f)
		}
	}
	if h.streams() != 1 {
		t.Errorf("%d streams left", h.streams())
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kefu's servers end an answer WriteTimeout after its headers; a live
// stream lifts that deadline and outlives it.
func TestEventStreamOutlivesTheWriteTimeout(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	cookie, _ := signIn(t, s.Handler(), readTok)
	evs := readEvents(t, openStream(t, srv, cookie))
	if ev := next(t, evs); ev.name != "state" {
		t.Fatalf("first event %q", ev.name)
	}
	time.Sleep(600 * time.Millisecond)
	s.hub.update(func(st *state, o *ops) { st.leave("o-late", time.Now(), 5, events.AbandonLeft, o) })
	if ev := next(t, evs); ev.name != "d" || !strings.Contains(ev.data, "o-late") {
		t.Fatalf("after the write timeout: %+v", ev)
	}
}
