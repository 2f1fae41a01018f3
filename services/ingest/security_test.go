package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/httpedge"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// A forged kf_create_session whose KfAccount is a phishing text: the
// notifier would send it to a real customer from the brand's account.
const forged = `<xml><ToUserName><![CDATA[touser]]></ToUserName><FromUserName><![CDATA[fromuser]]></FromUserName><CreateTime>1399197672</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_create_session]]></Event><KfAccount><![CDATA[请点击 http://evil.example 领取退款]]></KfAccount></xml>`

// expect checks the status and that the stream still holds want events.
func (h *harness) expect(resp *http.Response, status int, want uint64) string {
	h.t.Helper()
	body := readBody(h.t, resp)
	if resp.StatusCode != status {
		h.t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, status)
	}
	if status == http.StatusServiceUnavailable {
		// "Not now": a callback's 503 says when to come back, and its
		// body stays the plain text WeChat is used to.
		httpapitest.CheckRetryAfter(h.t, resp.Header)
		if strings.Contains(body, "{") {
			h.t.Errorf("a callback's 503 body is not plain text: %q", body)
		}
	}
	if n := h.count(); n != want {
		h.t.Fatalf("%d events in the stream, want %d", n, want)
	}
	return body
}

// rejected reads kefu_ingest_rejected_total for reason.
func (h *harness) rejected(reason string) float64 {
	h.t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "kefu_ingest_rejected_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// With an EncodingAESKey, a plaintext body signed by the plain signature
// (which does not cover the body) is refused; WeChat's compat and safe
// modes always send <Encrypt>.
func TestPlaintextIsRefusedWhenAKeyIsSet(t *testing.T) {
	h := newHarness(t, setup{})
	h.expect(h.post(wechat.ModePlain, []byte(forged)), 401, 0)
	if h.rejected("signature") != 1 {
		t.Errorf("rejected{reason=signature} = %v", h.rejected("signature"))
	}
	// encrypt_type=raw says the same as no encrypt_type.
	q, body := h.sign(wechat.ModePlain, []byte(forged))
	q.Set("encrypt_type", "raw")
	h.expect(h.postRaw(q, body), 401, 0)
	// The same account's encrypted callbacks are accepted.
	h.expect(h.post(wechat.ModeCompat, []byte(kfSwitch)), 200, 1)
	if w := h.svc.Warnings(); len(w) != 0 {
		t.Errorf("safe configuration warns %q", w)
	}
}

// KEFU_WECHAT_ALLOW_PLAINTEXT accepts plaintext during a migration, says
// so in Warnings, and still refuses a plaintext body on the signature of
// an encrypted callback (whose URL anyone in the logs could copy).
func TestMigrationSettingAcceptsPlaintextWithAWarning(t *testing.T) {
	h := newHarness(t, setup{migration: true})
	w := h.svc.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "KEFU_WECHAT_ALLOW_PLAINTEXT") || strings.Contains(w[0], aesKey) || strings.Contains(w[0], token) {
		t.Fatalf("warnings %q", w)
	}
	h.expect(h.post(wechat.ModePlain, []byte(kfSwitch)), 200, 1)

	q, body := h.sign(wechat.ModeSafe, []byte(strings.Replace(kfSwitch, "1399197672", "1399197673", 1)))
	h.expect(h.postRaw(q, body), 200, 2)
	q.Del("encrypt_type")
	q.Del("msg_signature")
	h.expect(h.postRaw(q, []byte(forged)), 401, 2)
	if h.rejected("replayed_signature") != 1 {
		t.Errorf("rejected{reason=replayed_signature} = %v", h.rejected("replayed_signature"))
	}
}

func TestPlainModeWarnsThatBodiesAreUnauthenticated(t *testing.T) {
	h := newHarness(t, setup{plainMode: true})
	w := h.svc.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "plain mode") || strings.Contains(w[0], token) {
		t.Fatalf("warnings %q", w)
	}
}

// A correctly signed callback whose timestamp is outside the window is
// refused, in every mode, for POST and for GET URL verification.
func TestStaleTimestampsAreRefused(t *testing.T) {
	safe := newHarness(t, setup{})
	plain := newHarness(t, setup{srv: safe.srv, plainMode: true})
	hourAgo, inAnHour := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name string
		h    *harness
		mode wechat.Mode
	}{{"safe", safe, wechat.ModeSafe}, {"compat", safe, wechat.ModeCompat}, {"plain", plain, wechat.ModePlain}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, at := range []time.Time{hourAgo, inAnHour, time.Now().Add(-ingest.DefaultWindow - 5*time.Second)} {
				q, body := tc.h.signAt(tc.mode, []byte(kfSwitch), at)
				tc.h.expect(tc.h.postRaw(q, body), 401, 0)
			}
			q, body := tc.h.sign(tc.mode, []byte(kfSwitch))
			q.Set("timestamp", "yesterday")
			tc.h.expect(tc.h.postRaw(q, body), 401, 0)
		})
	}
	for _, tc := range []struct {
		name string
		h    *harness
	}{{"safe", safe}, {"plain", plain}} {
		t.Run(tc.name+"/GET", func(t *testing.T) {
			ts := strconv.FormatInt(hourAgo.Unix(), 10)
			q := url.Values{"timestamp": {ts}, "nonce": {"42"}, "echostr": {"hello"}, "signature": {wechat.Signature(token, ts, "42")}}
			resp, err := http.Get(tc.h.http.URL + "/wechat/callback?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if body := tc.h.expect(resp, 401, 0); body == "hello\n" || body == "hello" {
				t.Fatal("a stale verification echoed")
			}
		})
	}
	if safe.rejected("stale") != 9 || plain.rejected("stale") != 5 {
		t.Errorf("rejected{reason=stale}: safe %v plain %v", safe.rejected("stale"), plain.rejected("stale"))
	}
}

// Inside the window an encrypted replay is JetStream's duplicate: answered
// success and stored once.
func TestAReplayInsideTheWindowIsADuplicate(t *testing.T) {
	h := newHarness(t, setup{})
	q, body := h.signAt(wechat.ModeSafe, []byte(kfSwitch), time.Now().Add(-ingest.DefaultWindow+30*time.Second))
	if got := h.expect(h.postRaw(q, body), 200, 1); got != "success" {
		t.Fatalf("first: %q", got)
	}
	if got := h.expect(h.postRaw(q, body), 200, 1); got != "success" {
		t.Fatalf("replay: %q", got)
	}
}

// The window must stay below half the de-duplication window; New refuses
// a configuration that would let a replay through as a new event.
func TestWindowMustStayBelowHalfTheDuplicateWindow(t *testing.T) {
	b, _ := bustest.Open(t, duplicateWindow(5*time.Minute))
	_, err := ingest.New(ingest.Config{AppID: appID, Token: token, AESKey: aesKey, Window: 3 * time.Minute}, ingest.Deps{Publisher: b})
	if err == nil || !strings.Contains(err.Error(), "KEFU_WECHAT_CALLBACK_WINDOW") {
		t.Fatalf("New = %v, want an error naming KEFU_WECHAT_CALLBACK_WINDOW", err)
	}
	svc, err := ingest.New(ingest.Config{AppID: appID, Token: token, AESKey: aesKey}, ingest.Deps{Publisher: b})
	if err != nil || 2*svc.Window() >= 5*time.Minute {
		t.Fatalf("the default window %v (%v) does not fit a 5m de-duplication window", svc.Window(), err)
	}
}

// Plain mode: a used signature/timestamp/nonce cannot carry another body,
// on any replica; WeChat's identical retries are answered success once
// stored.
func TestPlainSignatureCarriesOneBodyAcrossReplicas(t *testing.T) {
	one := newHarness(t, setup{plainMode: true})
	two := newHarness(t, setup{srv: one.srv, plainMode: true}) // its own connection

	q, body := one.sign(wechat.ModePlain, []byte(kfSwitch))
	one.expect(one.postRaw(q, body), 200, 1)

	two.expect(two.postRaw(q, []byte(forged)), 401, 1)
	one.expect(one.postRaw(q, []byte(forged)), 401, 1)
	if two.rejected("replayed_signature") != 1 {
		t.Errorf("replica two: rejected{reason=replayed_signature} = %v", two.rejected("replayed_signature"))
	}
	// Swapping timestamp and nonce gives the same signature (the three
	// values are sorted before hashing); it is still the same signature.
	swapped := url.Values{"signature": q["signature"], "timestamp": q["nonce"], "nonce": q["timestamp"]}
	two.expect(two.postRaw(swapped, []byte(forged)), 401, 1)

	for i := 0; i < 3; i++ { // WeChat's retries, on either replica
		if got := two.expect(two.postRaw(q, body), 200, 1); got != "success" {
			t.Fatalf("retry %d: %q", i, got)
		}
	}
	last := one.last()
	if last.Header.Get("Nats-Msg-Id") != "wx-evt-fromuser-1399197672-kf_switch_session-test1@test-test2@test" {
		t.Fatalf("stored %s", last.Header.Get("Nats-Msg-Id"))
	}

	// The signature of a URL verification is spent on it.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	v := url.Values{"timestamp": {ts}, "nonce": {"777"}, "echostr": {"e"}, "signature": {wechat.Signature(token, ts, "777")}}
	resp, err := http.Get(one.http.URL + "/wechat/callback?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	one.expect(resp, 200, 1)
	v.Del("echostr")
	two.expect(two.postRaw(v, []byte(forged)), 401, 1)
}

// When the signature store cannot be reached the answer is 503, so WeChat
// retries, and nothing is published.
func TestSignatureStoreDownIs503(t *testing.T) {
	h := newHarness(t, setup{plainMode: true})
	if err := jsOf(h.t, h.srv).DeleteKeyValue(context.Background(), bus.BucketCallbackSigs); err != nil {
		t.Fatal(err)
	}
	h.expect(h.post(wechat.ModePlain, []byte(kfSwitch)), 503, 0)
	if h.rejected("signature_store") != 1 {
		t.Errorf("rejected{reason=signature_store} = %v", h.rejected("signature_store"))
	}
}

// ipSource is a getcallbackip that fails until released.
type ipSource struct {
	mu       sync.Mutex
	released bool
	list     []string
	calls    int
}

func (s *ipSource) GetCallbackIP(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if !s.released {
		return nil, errors.New("getcallbackip: system busy")
	}
	return s.list, nil
}

func (s *ipSource) release(list ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released, s.list = true, list
}

// With the allow-list on, a callback from an address WeChat does not list
// is refused with 403; before the first list is known the answer is 503.
// The list comes from the fake WeChat's getcallbackip through the real
// client, and the client address from trusted proxy headers.
func TestIPAllowlist(t *testing.T) {
	fake, err := wechattest.New(wechattest.Config{AppID: appID, AppSecret: "secret", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	fakeHS := httptest.NewServer(fake)
	t.Cleanup(func() { fakeHS.Close(); fake.Close() })
	client, err := wechat.NewClient(wechat.ClientConfig{BaseURL: fakeHS.URL, AppID: appID, Secret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	h := newHarness(t, setup{edit: func(c *ingest.Config, d *ingest.Deps) {
		c.IPAllowlist = true
		c.ClientIP = func(r *http.Request) netip.Addr { return httpedge.ClientIP(r, proxy) }
		d.CallbackIPs = client
	}})
	from := func(addr string) *http.Response {
		q, body := h.sign(wechat.ModeSafe, []byte(kfSwitch))
		req, _ := http.NewRequest(http.MethodPost, h.http.URL+"/wechat/callback?"+q.Encode(), strings.NewReader(string(body)))
		req.Header.Set("X-Forwarded-For", addr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	h.expect(from("101.226.103.7"), 503, 0)
	if h.rejected("ip_list_unknown") != 1 {
		t.Errorf("rejected{reason=ip_list_unknown} = %v", h.rejected("ip_list_unknown"))
	}
	if err := h.svc.RefreshCallbackIPs(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.expect(from("203.0.113.9"), 403, 0)
	h.expect(from("101.226.62.78"), 403, 0) // next to a listed address
	if h.rejected("ip") != 2 {
		t.Errorf("rejected{reason=ip} = %v", h.rejected("ip"))
	}
	// URL verification comes from WeChat too.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	v := url.Values{"timestamp": {ts}, "nonce": {"1"}, "echostr": {"e"}, "signature": {wechat.Signature(token, ts, "1")}}
	req, _ := http.NewRequest(http.MethodGet, h.http.URL+"/wechat/callback?"+v.Encode(), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	h.expect(resp, 403, 0)
	h.expect(from("101.226.103.7"), 200, 1) // inside 101.226.103.0/25

	// A failed refresh keeps the list in use.
	fake.InjectErrors(wechattest.MethodCallbackIP, wechattest.CodeInvalidCredential, 2)
	if err := h.svc.RefreshCallbackIPs(context.Background()); err == nil {
		t.Fatal("the injected failure did not fail the refresh")
	}
	h.expect(from("101.226.62.77"), 200, 1) // the same callback: a duplicate
	// A new list replaces it.
	if err := fake.SetCallbackIPs([]string{"198.51.100.0/24"}); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.RefreshCallbackIPs(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.expect(from("101.226.62.77"), 403, 1)
}

// Start loads the list in the background, retrying a failed first fetch;
// until then callbacks are answered 503.
func TestIPAllowlistIsLoadedInTheBackground(t *testing.T) {
	src := &ipSource{}
	h := newHarness(t, setup{edit: func(c *ingest.Config, d *ingest.Deps) {
		c.IPAllowlist = true
		d.CallbackIPs = src
	}})
	if err := h.svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.svc.Stop(context.Background()) })
	h.expect(h.post(wechat.ModeSafe, []byte(kfSwitch)), 503, 0)
	src.release("127.0.0.1", "::1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := h.post(wechat.ModeSafe, []byte(kfSwitch))
		readBody(t, resp)
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != 503 || time.Now().After(deadline) {
			t.Fatalf("status %d while waiting for the list", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.count() != 1 {
		t.Fatalf("%d events", h.count())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.svc.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// A MsgType or Event of 5 KB is stored under the fixed token "other", the
// original kept in the payload, and the connection to NATS stays healthy:
// the next callback is stored too.
func TestHugeMsgTypeAndEventAreStoredUnderOther(t *testing.T) {
	h := newHarness(t, setup{})
	huge := strings.Repeat("x", 5000)
	msg := `<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1700000000</CreateTime><MsgType>` + huge + `</MsgType><MsgId>1</MsgId></xml>`
	h.expect(h.post(wechat.ModeSafe, []byte(msg)), 200, 1)
	m := h.last()
	if m.Subject != "kefu.wechat.message.other" {
		t.Fatalf("subject %.80q", m.Subject)
	}
	ev, err := events.Decode[events.MessageReceived](m.Data)
	if err != nil || ev.MsgType != huge || ev.Raw["MsgType"] != huge {
		t.Fatalf("the original MsgType is not in the payload: %v", err)
	}

	// An event without MsgId: its id is built from the callback, and is
	// bounded too.
	evt := `<xml><ToUserName>gh_1</ToUserName><FromUserName>` + strings.Repeat("o", 400) + `</FromUserName><CreateTime>1700000000</CreateTime><MsgType>event</MsgType><Event>` + huge + `</Event></xml>`
	h.expect(h.post(wechat.ModeSafe, []byte(evt)), 200, 2)
	m = h.last()
	if m.Subject != "kefu.wechat.event.other" || !strings.HasPrefix(m.Header.Get("Nats-Msg-Id"), "wx-evt-sha256-") || len(m.Header.Get("Nats-Msg-Id")) > events.MaxIDLength {
		t.Fatalf("subject %.80q, id %.80q", m.Subject, m.Header.Get("Nats-Msg-Id"))
	}
	if e, err := events.Decode[events.EventReceived](m.Data); err != nil || e.Event != huge {
		t.Fatalf("the original Event is not in the payload: %v", err)
	}
	if err := h.bus.Ready(context.Background()); err != nil {
		t.Fatalf("the NATS connection was lost: %v", err)
	}
	h.expect(h.post(wechat.ModeSafe, []byte(kfSwitch)), 200, 3)
}

// A callback within the body limit whose event is larger than the bus
// accepts is refused with 413, not answered 503 on every retry, and the
// next callback is stored.
func TestEventTooLargeForTheBusIs413(t *testing.T) {
	h := newHarness(t, setup{})
	if h.svc.MaxBody() != 1<<20 {
		t.Fatalf("MaxBody %d", h.svc.MaxBody())
	}
	// The content appears twice in the event (content and raw), so 600 KB
	// of text makes an event of 1.2 MB from an 800 KB encrypted body.
	text := strings.Repeat("a", 600<<10)
	msg := `<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>` + text + `</Content><MsgId>7</MsgId></xml>`
	q, body := h.sign(wechat.ModeSafe, []byte(msg))
	if int64(len(body)) > h.svc.MaxBody() {
		t.Fatalf("test body %d bytes is over the limit", len(body))
	}
	got := h.expect(h.postRaw(q, body), 413, 0)
	if !strings.Contains(got, "event too large for the bus") {
		t.Fatalf("answer %q", got)
	}
	h.expect(h.postRaw(q, body), 413, 0) // WeChat's retry: the same answer
	if h.rejected("event_too_large") != 2 {
		t.Errorf("rejected{reason=event_too_large} = %v", h.rejected("event_too_large"))
	}
	h.expect(h.post(wechat.ModeSafe, []byte(kfSwitch)), 200, 1)
}

// The body limit follows the bus's max payload when that is smaller.
func TestBodyLimitFollowsTheBusPayloadLimit(t *testing.T) {
	opts := natstest.Options(t)
	opts.MaxPayload = 32 << 10
	h := newHarness(t, setup{nats: opts})
	if h.svc.MaxBody() != 32<<10 {
		t.Fatalf("MaxBody %d, want the server's max_payload", h.svc.MaxBody())
	}
	msg := `<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>` + strings.Repeat("a", 40<<10) + `</Content><MsgId>7</MsgId></xml>`
	h.expect(h.post(wechat.ModeSafe, []byte(msg)), 413, 0)
	h.expect(h.post(wechat.ModeSafe, []byte(kfSwitch)), 200, 1)
}

// MsgId is an unsigned 64-bit integer: the largest one is stored, with the
// decimal string as msg_id and in Nats-Msg-Id.
func TestLargestMsgIdIsStored(t *testing.T) {
	h := newHarness(t, setup{})
	msg := `<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>18446744073709551615</MsgId></xml>`
	h.expect(h.post(wechat.ModeSafe, []byte(msg)), 200, 1)
	m := h.last()
	ev, err := events.Decode[events.MessageReceived](m.Data)
	if err != nil || ev.MsgID != "18446744073709551615" || m.Header.Get("Nats-Msg-Id") != "wx-msg-18446744073709551615" {
		t.Fatalf("msg_id %q, Nats-Msg-Id %q, %v", ev.MsgID, m.Header.Get("Nats-Msg-Id"), err)
	}
}

// seriesCount is the number of series of kefu_ingest_* metrics.
func seriesCount(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "kefu_ingest_") {
			n += len(f.GetMetric())
		}
	}
	return n
}

// 300 signed callbacks with random MsgTypes and Events create no metric
// series beyond the first "other" ones: label values come from closed
// sets.
func TestRandomTypesCreateNoNewMetricSeries(t *testing.T) {
	h := newHarness(t, setup{plainMode: true})
	rnd := rand.New(rand.NewPCG(1, 2))
	name := func() string {
		const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.*> 客服"
		r := []rune(alphabet)
		b := make([]rune, 1+rnd.IntN(80))
		b[0] = 'T' // never blank, never "event"
		for i := 1; i < len(b); i++ {
			b[i] = r[rnd.IntN(len(r))]
		}
		return string(b)
	}
	send := func(i int) {
		var msg string
		if i%2 == 0 {
			msg = fmt.Sprintf(`<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[%s]]></MsgType><MsgId>%d</MsgId></xml>`, name(), 1000+i)
		} else {
			msg = fmt.Sprintf(`<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>%d</CreateTime><MsgType>event</MsgType><Event><![CDATA[%s]]></Event></xml>`, 1700000000+i, name())
		}
		resp := h.post(wechat.ModePlain, []byte(msg))
		if body := readBody(t, resp); resp.StatusCode != 200 {
			t.Fatalf("callback %d: %d %q", i, resp.StatusCode, body)
		}
	}
	send(0)
	send(1)
	before := seriesCount(t, h.reg)
	for i := 2; i < 302; i++ {
		send(i)
	}
	if after := seriesCount(t, h.reg); after != before {
		t.Fatalf("%d metric series after 300 random callbacks, %d before", after, before)
	}
	if h.count() != 302 {
		t.Fatalf("%d events stored, want 302", h.count())
	}
}

// jsOf is a JetStream client of the test's own on srv.
func jsOf(t *testing.T, srv *server.Server) jetstream.JetStream {
	_, js := natstest.Connect(t, srv)
	return js
}
