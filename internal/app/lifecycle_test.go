package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// get returns the status of GET url on a fresh connection, or 0 when the
// request fails.
func get(url string) int {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// pollStatus polls url until it answers want, and returns when it did.
func pollStatus(t *testing.T, url string, want int, within time.Duration) time.Time {
	t.Helper()
	var at time.Time
	natstest.Eventually(t, within, func() bool {
		if get(url) != want {
			return false
		}
		at = time.Now()
		return true
	}, "%s answering %d", url, want)
	return at
}

// With the NATS server gone, readiness fails at once, liveness only after
// KEFU_NATS_DOWN_LIMIT (a restart would not bring the server back sooner),
// and both recover when the server is back — without a restart.
func TestLivenessFailsOnlyAfterTheBusDownLimit(t *testing.T) {
	const limit = 3 * time.Second
	opts := natstest.Options(t)
	srv := natstest.Run(t, opts)
	port := srv.Addr().(*net.TCPAddr).Port
	httpAddr := freeAddr(t)
	for k, v := range map[string]string{
		"KEFU_HTTP_ADDR": httpAddr, "KEFU_NATS_URL": srv.ClientURL(), "KEFU_DATA_DIR": t.TempDir(),
		"KEFU_WECHAT_APPID": "wx1", "KEFU_WECHAT_TOKEN": "tok", "KEFU_LOG_LEVEL": "error",
		"KEFU_PUBLIC_RATE_LIMIT": "0", "KEFU_NATS_DOWN_LIMIT": limit.String(), "KEFU_SHUTDOWN_GRACE": "5s",
	} {
		t.Setenv(k, v)
	}
	runUntilCleanup(t, "all")
	base := "http://" + httpAddr
	pollStatus(t, base+"/readyz", 200, 20*time.Second)
	if s := get(base + "/healthz"); s != 200 {
		t.Fatalf("/healthz %d with the bus up", s)
	}

	down := time.Now()
	srv.Shutdown()
	srv.WaitForShutdown()
	unready := pollStatus(t, base+"/readyz", 503, 2*time.Second)
	if s := get(base + "/healthz"); time.Since(down) < limit && s != 200 {
		t.Fatalf("/healthz %d %s after the server went away; want 200 until %s", s, time.Since(down), limit)
	}
	unhealthy := pollStatus(t, base+"/healthz", 503, limit+5*time.Second)
	if unhealthy.Sub(down) < limit {
		t.Fatalf("/healthz failed after %s, before KEFU_NATS_DOWN_LIMIT %s", unhealthy.Sub(down), limit)
	}
	t.Logf("readyz 503 after %s, healthz 503 after %s (limit %s)", unready.Sub(down), unhealthy.Sub(down), limit)

	o2 := *opts
	o2.Port = port
	natstest.Run(t, &o2)
	pollStatus(t, base+"/healthz", 200, 10*time.Second)
	pollStatus(t, base+"/readyz", 200, 10*time.Second)
}

// `kefu all` under a steady stream of callbacks stops within
// KEFU_SHUTDOWN_GRACE: readiness fails first while HTTP is still served,
// and every callback answered 200 is in the stream afterwards.
func TestShutdownUnderLoadFinishesWithinTheGrace(t *testing.T) {
	const grace = 10 * time.Second
	dataDir := t.TempDir()
	r := startAll(t, map[string]string{
		"KEFU_DATA_DIR": dataDir, "KEFU_PUBLIC_RATE_LIMIT": "0", "KEFU_SHUTDOWN_GRACE": grace.String(),
	})
	codec, err := wechat.NewCodec(edgeToken, edgeAppID, edgeAESKey)
	if err != nil {
		t.Fatal(err)
	}
	// Senders post until the server stops accepting: the load lasts
	// through the whole shutdown.
	const senders = 8
	var (
		mu       sync.Mutex
		answered []string
		failed   []string
		wg       sync.WaitGroup
		flowing  = make(chan struct{}, 1)
	)
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 15 * time.Second}
			for n := 0; ; n++ {
				id := fmt.Sprintf("o-load-%d-%d", i, n)
				now := fmt.Sprint(time.Now().Unix())
				plain := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_edge]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
					`<CreateTime>%s</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>`, id, now)
				q, body, err := codec.SignCallback(wechat.ModeSafe, []byte(plain), id, now, "n-"+id)
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
					return
				}
				resp, err := c.Post(r.base+"/wechat/callback?"+q.Encode(), "text/xml", bytes.NewReader(body))
				if err != nil {
					return // the server has stopped accepting
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					answered = append(answered, id)
					if len(answered) == 200 {
						flowing <- struct{}{}
					}
					mu.Unlock()
				}
			}
		}()
	}
	<-flowing

	begin := time.Now()
	took := make(chan time.Duration, 1)
	go func() { r.stop(); took <- time.Since(begin) }()
	// Readiness fails while the listener still accepts.
	pollStatus(t, r.base+"/readyz", 503, grace)
	var d time.Duration
	select {
	case d = <-took:
	case <-time.After(2 * grace):
		t.Fatal("kefu all did not stop")
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("signing: %v", failed[0])
	}
	t.Logf("kefu all stopped %s after the signal (KEFU_SHUTDOWN_GRACE %s) with %d senders; %d callbacks answered 200", d.Round(time.Millisecond), grace, senders, len(answered))
	if d > grace {
		t.Fatalf("shutdown took %s, longer than KEFU_SHUTDOWN_GRACE %s", d, grace)
	}

	opts := natstest.Options(t)
	opts.StoreDir = filepath.Join(dataDir, "jetstream")
	srv := natstest.Run(t, opts)
	stored := storedOpenIDs(t, srv.ClientURL())
	for _, id := range answered {
		if _, ok := slices.BinarySearch(stored, id); !ok {
			t.Errorf("callback %s answered 200 but not stored", id)
		}
	}
}

// Each step of the shutdown gets its share of the grace and the whole
// returns within it, even with a request that never finishes and a module
// whose Stop ignores its deadline.
func TestShutdownIsBoundedByTheGrace(t *testing.T) {
	const grace = 2 * time.Second
	b, _ := bustest.Open(t)
	rt := &runtime{log: zap.NewNop(), bus: b}

	inFlight := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-release
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(l)
	go http.Get("http://" + l.Addr().String() + "/slow")
	<-inFlight

	var (
		stopAt       time.Time
		stopDeadline time.Time
		drainingSeen bool
		httpClosed   bool
	)
	stopped := make(chan struct{})
	start := time.Now()
	rt.shutdown(grace, []*http.Server{hs}, func(ctx context.Context) {
		stopAt = time.Now()
		stopDeadline, _ = ctx.Deadline()
		drainingSeen = rt.draining.Load()
		_, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
		httpClosed = err != nil
		close(stopped)
		<-ctx.Done()
		<-release // ignores its deadline
	})
	took := time.Since(start)
	<-stopped
	if took > grace+300*time.Millisecond {
		t.Fatalf("shutdown returned after %s, grace %s", took, grace)
	}
	if !drainingSeen || !httpClosed {
		t.Fatalf("modules stopped before readiness failed (%v) or before HTTP stopped accepting (%v)", drainingSeen, httpClosed)
	}
	if want := start.Add(time.Duration(float64(grace) * stopShare)); stopDeadline.After(want.Add(50 * time.Millisecond)) {
		t.Fatalf("modules may stop until %s, want by %s", stopDeadline.Sub(start), want.Sub(start))
	}
	if s := stopAt.Sub(start); s < time.Duration(float64(grace)*unreadyShare) {
		t.Fatalf("modules stopped %s after the signal, before the unready period ended", s)
	}
	t.Logf("returned after %s (grace %s); modules stopped from %s", took.Round(time.Millisecond), grace, stopAt.Sub(start).Round(time.Millisecond))
}

// The server drops kefu's connections when their credentials stop being
// valid (a password rotated on the server before kefu got the new one),
// and refuses every reconnect: nats.go used to give up for good after the
// second refusal. kefu keeps trying; once the server accepts the password
// again, callbacks are answered and stored without a restart.
func TestRoleRecoversAfterTheServerRefusedItsCredentials(t *testing.T) {
	const user, password = "kefu", "first-password-0123456789"
	opts := natstest.Options(t)
	opts.Users = []*server.User{{Username: user, Password: password}}
	srv := natstest.Run(t, opts)
	httpAddr := freeAddr(t)
	for k, v := range map[string]string{
		"KEFU_HTTP_ADDR": httpAddr, "KEFU_NATS_URL": srv.ClientURL(), "KEFU_DATA_DIR": t.TempDir(),
		"KEFU_NATS_USER": user, "KEFU_NATS_PASSWORD": password,
		"KEFU_WECHAT_APPID": edgeAppID, "KEFU_WECHAT_TOKEN": edgeToken, "KEFU_WECHAT_AES_KEY": edgeAESKey,
		"KEFU_LOG_LEVEL": "warn", "KEFU_PUBLIC_RATE_LIMIT": "0", "KEFU_SHUTDOWN_GRACE": "5s",
	} {
		t.Setenv(k, v)
	}
	logs := runUntilCleanup(t, "ingest")
	base := "http://" + httpAddr
	pollStatus(t, base+"/readyz", 200, 20*time.Second)

	// The server comes back on the same port and store with another
	// password, then with kefu's again. (A restart rather than a live
	// reload of the users: nats-server's reload of authorization races
	// with new connections under the race detector.)
	port := srv.Addr().(*net.TCPAddr).Port
	restart := func(password string) {
		srv.Shutdown()
		srv.WaitForShutdown()
		next := *opts
		next.Port = port
		next.Users = []*server.User{{Username: user, Password: password}}
		srv = natstest.Run(t, &next)
	}
	restart("second-password-9876543210")
	pollStatus(t, base+"/readyz", 503, 5*time.Second)
	// More refusals than the two after which nats.go used to stop.
	natstest.Eventually(t, 20*time.Second, func() bool {
		return strings.Count(strings.ToLower(logs.String()), "authorization violation") >= 4
	}, "four refused connections logged; kefu stopped retrying:\n%s", lazy(logs.String))

	restart(password)
	pollStatus(t, base+"/readyz", 200, 10*time.Second)
	q, body := signedEvent(t, "o-after-rotation")
	resp, err := http.Post(base+"/wechat/callback?"+q.Encode(), "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback after recovery: %d", resp.StatusCode)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("KEFU_WECHAT after recovery: %+v %v", info, err)
	}
	if strings.Contains(logs.String(), password) {
		t.Error("the log shows the NATS password")
	}
}

// runUntilCleanup runs the role in-process with the test's environment and
// stops it when the test ends; the returned buffer collects its log.
func runUntilCleanup(t *testing.T, role string) *lockedBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &lockedBuffer{}
	go func() { done <- run(ctx, []string{role}, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("did not stop")
		}
	})
	return logs
}
