package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// outage is how long the hub is stopped: longer than WeChat's three tries
// (about 15 s in all) by default would cost the test time, so tests use
// 10 s, which is already far beyond ingest's 4 s publish timeout; the
// full 60 s: KEFU_TEST_HUB_OUTAGE=60s.
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("KEFU_TEST_HUB_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("KEFU_TEST_HUB_OUTAGE: %v", err)
		}
		return d
	}
	return 10 * time.Second
}

// storeForward is a hub with a leaf node listener and ingest publishing
// through a store-and-forward leaf.
type storeForward struct {
	*harness
	hubOpts *server.Options
	leaf    *bus.Leaf
}

func newStoreForward(t *testing.T, maxBytes int64) *storeForward {
	t.Helper()
	opts := natstest.Options(t)
	opts.Port = freePort(t)
	opts.LeafNode.Host = "127.0.0.1"
	opts.LeafNode.Port = freePort(t)
	hub := natstest.Run(t, opts)
	hb, _ := bustest.Open(t, bustest.Server(hub), duplicateWindow(dupWindow), bustest.Streams(events.StreamWeChat),
		bustest.Config(func(c *bus.Config) { c.Name = "ingest-hub" }))
	leafURL, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", opts.LeafNode.Port))
	leaf, err := bus.OpenLeaf(context.Background(), hb, bus.LeafConfig{
		HubURLs: []*url.URL{leafURL}, Domain: "ingest-test", DataDir: t.TempDir(), MaxBytes: maxBytes,
		Stream: events.StreamWeChat, TrimEvery: 200 * time.Millisecond, ReconnectEvery: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaf.Close)
	h := newHarness(t, setup{srv: hub, edit: func(_ *ingest.Config, d *ingest.Deps) { d.Publisher = leaf }})
	sf := &storeForward{harness: h, hubOpts: opts, leaf: leaf}
	sf.waitSourced(t)
	return sf
}

// waitSourced waits until the hub stream sources the spool over a live
// leaf connection.
func (sf *storeForward) waitSourced(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, 60*time.Second, func() bool {
		st, err := sf.leaf.State(context.Background())
		if err != nil || !st.Connected {
			return false
		}
		info, err := sf.stream.Info(context.Background())
		if err != nil {
			return false
		}
		for _, s := range info.Sources {
			if s.Name == bus.SpoolStream && s.Active >= 0 {
				return true
			}
		}
		return false
	}, "the hub sourcing the spool over a live leaf connection")
}

func textCallback(openid string, msgID int) []byte {
	return fmt.Appendf(nil, `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[消息 %d]]></Content><MsgId>%d</MsgId></xml>`, openid, msgID, msgID)
}

// deliver posts one signed callback as WeChat does, with a fresh nonce;
// it reports whether ingest answered "success".
func (sf *storeForward) deliver(client *http.Client, plain []byte) bool {
	q, body, err := sf.codec.SignCallback(wechat.ModeSafe, plain, "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
		strconv.FormatInt(time.Now().Unix(), 10), strconv.FormatInt(1320562132+nonces.Add(1), 10))
	if err != nil {
		panic(err)
	}
	resp, err := client.Post(sf.http.URL+"/wechat/callback?"+q.Encode(), "text/xml", bytes.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && string(b) == wechat.SuccessReply
}

// storedIDs reads the hub stream: every Nats-Msg-Id in stream order.
func (sf *storeForward) storedIDs(t *testing.T) []string {
	t.Helper()
	info, err := sf.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := sf.stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		ids = append(ids, m.Header.Get(events.HeaderMsgID))
	}
	return ids
}

// The hub stopped for a while under a steady stream of callbacks: every
// callback answered "success" is in the hub's KEFU_WECHAT exactly once
// after recovery, in order per customer, and WeChat's retries of answered
// callbacks during the outage are stored once.
func TestStoreAndForwardKeepsEveryAnsweredCallbackThroughAHubOutage(t *testing.T) {
	down := outage(t)
	sf := newStoreForward(t, 256<<20)

	const customers = 4
	type sent struct {
		id       string
		customer int
	}
	var (
		mu       sync.Mutex
		answered []sent
		refused  int
		phase    = "before"
		perPhase = map[string]int{}
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 5 * time.Second}
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c := n % customers
			plain := textCallback("oCustomer"+strconv.Itoa(c), 1_000_000+n)
			ok := sf.deliver(client, plain)
			mu.Lock()
			if ok {
				answered = append(answered, sent{events.WeChatMessageID(strconv.Itoa(1_000_000 + n)), c})
				perPhase[phase]++
			} else {
				refused++
			}
			mu.Unlock()
			if ok && n%5 == 0 {
				// WeChat did not see the answer and retries: the same
				// message with a new signature.
				sf.deliver(client, plain)
			}
		}
	}()
	setPhase := func(p string) { mu.Lock(); phase = p; mu.Unlock() }

	time.Sleep(time.Second)
	setPhase("outage")
	sf.srv.Shutdown()
	sf.srv.WaitForShutdown()
	time.Sleep(down)
	setPhase("after")
	sf.srv = natstest.Run(t, sf.hubOpts) // same ports, same store
	restarted := time.Now()
	time.Sleep(time.Second)
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	t.Logf("answered success: %d before, %d during a %s outage, %d after; refused %d", perPhase["before"], perPhase["outage"], down, perPhase["after"], refused)
	if perPhase["outage"] == 0 {
		t.Fatal("no callback was answered success while the hub was down")
	}
	if refused > len(answered)/20 {
		t.Errorf("%d callbacks refused although the spool had room", refused)
	}

	want := map[string]int{}
	for _, s := range answered {
		want[s.id] = s.customer
	}
	deadline := time.Now().Add(45 * time.Second)
	var ids []string
	for {
		ids = sf.storedIDs(t)
		have := map[string]bool{}
		for _, id := range ids {
			have[id] = true
		}
		missing := 0
		for id := range want {
			if !have[id] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			st, _ := sf.leaf.State(context.Background())
			info, _ := sf.stream.Info(context.Background())
			for _, s := range info.Sources {
				t.Logf("source %s lag %d seq %d active %s err %v; leaf %+v", s.Name, s.Lag, s.Seq, s.Active, s.Error, st)
			}
			t.Fatalf("%d of %d answered callbacks never reached the hub", missing, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	seen := map[string]bool{}
	lastPos := map[int]int{}
	order := map[string]int{}
	for i, s := range answered {
		order[s.id] = i
	}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("%s stored twice", id)
		}
		seen[id] = true
		c, ok := want[id]
		if !ok {
			// Refused (503) after all, say by a timeout: WeChat retries it.
			continue
		}
		if prev, ok := lastPos[c]; ok && order[id] < prev {
			t.Errorf("customer %d: %s stored after a later message", c, id)
		}
		lastPos[c] = order[id]
	}
	t.Logf("hub holds %d events for %d answered callbacks, all there %s after the hub restarted", len(ids), len(want), time.Since(restarted).Round(100*time.Millisecond))

	// The spool gives back what the hub has stored.
	deadline = time.Now().Add(60 * time.Second)
	for {
		st, err := sf.leaf.State(context.Background())
		if err == nil && st.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %d events the hub has", st.Msgs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A full spool answers 503, never "success", so WeChat retries later; a
// retry of a callback the spool holds is still answered "success".
func TestFullSpoolAnswers503(t *testing.T) {
	hb, hub := bustest.Open(t, duplicateWindow(dupWindow))
	// No hub leaf listener there: the cluster stays unreachable.
	nowhere, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", freePort(t)))
	leaf, err := bus.OpenLeaf(context.Background(), hb, bus.LeafConfig{HubURLs: []*url.URL{nowhere}, Domain: "ingest-full",
		DataDir: t.TempDir(), MaxBytes: 16 << 10, Stream: events.StreamWeChat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaf.Close)
	h := newHarness(t, setup{srv: hub, edit: func(_ *ingest.Config, d *ingest.Deps) { d.Publisher = leaf }})
	sf := &storeForward{harness: h, leaf: leaf}
	client := &http.Client{Timeout: 5 * time.Second}
	for n := 1; ; n++ {
		if !sf.deliver(client, textCallback("oFull", n)) {
			break
		}
		if n > 1000 {
			t.Fatal("the spool never filled up")
		}
	}
	resp := h.post(wechat.ModeSafe, textCallback("oFull", 100000))
	if body := readBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || body == wechat.SuccessReply {
		t.Fatalf("full spool: %d %q, want 503", resp.StatusCode, body)
	}
	httpapitest.CheckRetryAfter(t, resp.Header)
	if !sf.deliver(client, textCallback("oFull", 1)) {
		t.Fatal("a retry of a stored callback was refused on a full spool")
	}
}
