package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

const (
	appID  = "wx2c2769f8efd9abc2"
	token  = "spamtest"
	aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

type harness struct {
	t      *testing.T
	srv    *server.Server
	bus    *bus.Bus
	svc    *ingest.Service
	http   *httptest.Server
	codec  *wechat.Codec
	stream jetstream.Stream
	reg    *prometheus.Registry
}

// setup is how a test harness differs from the default: an account in
// compat or safe mode (EncodingAESKey set, encrypted bodies only).
type setup struct {
	nats *server.Options // nil: a fresh server
	// srv reuses a running server: a second replica.
	srv       *server.Server
	transfer  bool
	plainMode bool // no EncodingAESKey
	migration bool // AllowPlaintext
	edit      func(*ingest.Config, *ingest.Deps)
}

// dupWindow is what internal/app gives the streams for the default
// five-minute callback window.
const dupWindow = 2*ingest.DefaultWindow + time.Minute

// duplicateWindow opens the test's bus with the given JetStream duplicate
// window, which ingest checks its callback window against.
func duplicateWindow(d time.Duration) bustest.Option {
	return bustest.Config(func(c *bus.Config) { c.DuplicateWindow = d })
}

func newHarness(t *testing.T, opts setup) *harness {
	t.Helper()
	srv := opts.srv
	if srv == nil {
		srv = natstest.Run(t, opts.nats)
	}
	b, _ := bustest.Open(t, bustest.Server(srv), duplicateWindow(dupWindow), bustest.Streams(events.StreamWeChat))
	key := aesKey
	if opts.plainMode {
		key = ""
	}
	reg := prometheus.NewRegistry()
	cfg := ingest.Config{AppID: appID, Token: token, AESKey: key, AllowPlaintext: opts.migration, Transfer: opts.transfer, PublishTimeout: time.Second}
	deps := ingest.Deps{Publisher: b, Registerer: reg}
	if opts.edit != nil {
		opts.edit(&cfg, &deps)
	}
	svc, err := ingest.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	codec, err := wechat.NewCodec(token, appID, aesKey)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := b.Stream(context.Background(), events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, bus: b, svc: svc, http: hs, codec: codec, stream: stream, reg: reg}
}

var nonces atomic.Int64

// sign signs plain as WeChat does now, with a nonce of its own.
func (h *harness) sign(mode wechat.Mode, plain []byte) (url.Values, []byte) {
	h.t.Helper()
	return h.signAt(mode, plain, time.Now())
}

func (h *harness) signAt(mode wechat.Mode, plain []byte, at time.Time) (url.Values, []byte) {
	h.t.Helper()
	q, body, err := h.codec.SignCallback(mode, plain, "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
		strconv.FormatInt(at.Unix(), 10), strconv.FormatInt(1320562132+nonces.Add(1), 10))
	if err != nil {
		h.t.Fatal(err)
	}
	return q, body
}

func (h *harness) post(mode wechat.Mode, plain []byte) *http.Response {
	h.t.Helper()
	q, body := h.sign(mode, plain)
	return h.postRaw(q, body)
}

func (h *harness) postRaw(q url.Values, body []byte) *http.Response {
	h.t.Helper()
	resp, err := http.Post(h.http.URL+"/wechat/callback?"+q.Encode(), "text/xml", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

func (h *harness) count() uint64 {
	h.t.Helper()
	info, err := h.stream.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

func (h *harness) last() *jetstream.RawStreamMsg {
	h.t.Helper()
	info, _ := h.stream.Info(context.Background())
	m, err := h.stream.GetMsg(context.Background(), info.State.LastSeq)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Every message type and event of the official docs, in every encryption
// mode, lands on its subject with its fields, its headers and its raw XML.
func TestEveryCallbackKindLandsOnItsSubject(t *testing.T) {
	h := newHarness(t, setup{})
	// Plain mode is another account configuration: no EncodingAESKey.
	hPlain := newHarness(t, setup{srv: h.srv, plainMode: true})
	files, _ := filepath.Glob("../../internal/wechat/testdata/callbacks/*.xml")
	if len(files) < 20 {
		t.Fatalf("only %d callback samples found", len(files))
	}
	for i, file := range files {
		plain, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// The samples reuse the docs' ids and times; make each a distinct
		// fact so de-duplication does not hide one.
		plain = createTimeRE.ReplaceAll(plain, []byte(fmt.Sprintf("<CreateTime>%d</CreateTime>", 1700000000+i)))
		plain = msgIDRE.ReplaceAll(plain, []byte(fmt.Sprintf("<MsgId>%d</MsgId>", 6054768590064713000+i)))
		cb, err := wechat.ParseCallback(plain)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		wantEvent, wantID := ingest.Event(cb, appID, time.Now())
		mode := []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe}[i%3]
		t.Run(filepath.Base(file)+"/"+mode.String(), func(t *testing.T) {
			send := h
			if mode == wechat.ModePlain {
				send = hPlain
			}
			before := h.count()
			resp := send.post(mode, plain)
			if body := readBody(t, resp); resp.StatusCode != 200 || body != "success" {
				t.Fatalf("answer %d %q", resp.StatusCode, body)
			}
			if h.count() != before+1 {
				t.Fatalf("stream grew by %d", h.count()-before)
			}
			m := h.last()
			if m.Subject != wantEvent.EventSubject() {
				t.Errorf("subject %q, want %q", m.Subject, wantEvent.EventSubject())
			}
			if !strings.HasPrefix(m.Subject, "kefu.wechat.") || strings.ContainsAny(m.Subject[len("kefu.wechat."):], "*> ") {
				t.Errorf("bad subject %q", m.Subject)
			}
			if got := m.Header.Get("Nats-Msg-Id"); got != wantID || m.Header.Get("ce-id") != wantID {
				t.Errorf("ids %q / %q, want %q", got, m.Header.Get("ce-id"), wantID)
			}
			if m.Header.Get("ce-type") != m.Subject+".v1" || m.Header.Get("ce-specversion") != "1.0" ||
				m.Header.Get("ce-source") != "kefu/ingest/"+appID || m.Header.Get("content-type") != "application/json" {
				t.Errorf("headers %v", m.Header)
			}
			ev, err := events.DecodeSubject(m.Subject, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			src := sourceOf(ev)
			if src.OpenID != cb.FromUserName || src.CreateTime != cb.CreateTime || src.Raw["MsgType"] != cb.Fields["MsgType"] {
				t.Errorf("source fields %+v", src)
			}
			if fmt.Sprint(src.Raw) != fmt.Sprint(cb.Fields) {
				t.Errorf("raw differs from the callback:\n%v\n%v", src.Raw, cb.Fields)
			}
		})
	}
}

var (
	createTimeRE = regexp.MustCompile(`<CreateTime>\d+</CreateTime>`)
	msgIDRE      = regexp.MustCompile(`<MsgId>\d+</MsgId>`)
)

func sourceOf(ev events.Event) events.WeChatSource {
	switch e := ev.(type) {
	case events.SessionCreated:
		return e.WeChatSource
	case events.SessionSwitched:
		return e.WeChatSource
	case events.SessionClosed:
		return e.WeChatSource
	case events.MessageReceived:
		return e.WeChatSource
	case events.EventReceived:
		return e.WeChatSource
	}
	return events.WeChatSource{}
}

const kfSwitch = `<xml><ToUserName><![CDATA[touser]]></ToUserName><FromUserName><![CDATA[fromuser]]></FromUserName><CreateTime>1399197672</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_switch_session]]></Event><FromKfAccount><![CDATA[test1@test]]></FromKfAccount><ToKfAccount><![CDATA[test2@test]]></ToKfAccount></xml>`

func TestSessionEventsCarryTheirFields(t *testing.T) {
	h := newHarness(t, setup{})
	readBody(t, h.post(wechat.ModeSafe, []byte(kfSwitch)))
	m := h.last()
	ev, err := events.Decode[events.SessionSwitched](m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != events.SubjectSessionSwitched || ev.OpenID != "fromuser" || ev.FromKfAccount != "test1@test" ||
		ev.ToKfAccount != "test2@test" || ev.AppID != appID || !ev.OccurredAt.Equal(time.Unix(1399197672, 0)) || ev.ReceivedAt.IsZero() {
		t.Fatalf("%s %+v", m.Subject, ev)
	}
	if id := m.Header.Get("Nats-Msg-Id"); id != "wx-evt-fromuser-1399197672-kf_switch_session-test1@test-test2@test" {
		t.Errorf("dedup id %q", id)
	}
}

func TestDuplicateCallbacksArePublishedOnce(t *testing.T) {
	h := newHarness(t, setup{})
	q, body := h.sign(wechat.ModeSafe, []byte(kfSwitch))
	for i := 0; i < 4; i++ { // WeChat's first try and three retries
		resp := h.postRaw(q, body)
		if body := readBody(t, resp); resp.StatusCode != 200 || body != "success" {
			t.Fatalf("try %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := h.count(); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
}

func TestBadInputIsRejectedAndNeverPublished(t *testing.T) {
	h := newHarness(t, setup{})
	hPlain := newHarness(t, setup{srv: h.srv, plainMode: true})
	other, _ := wechat.NewCodec(token, "wxOTHERAPPID000000", aesKey)
	good := []byte(kfSwitch)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	tests := []struct {
		name   string
		do     func() *http.Response
		status int
	}{
		{"bad signature is 401", func() *http.Response {
			q, body := hPlain.sign(wechat.ModePlain, good)
			q.Set("signature", strings.Repeat("0", 40))
			return hPlain.postRaw(q, body)
		}, 401},
		{"bad msg_signature is 401", func() *http.Response {
			q, body := h.sign(wechat.ModeSafe, good)
			q.Set("msg_signature", strings.Repeat("0", 40))
			return h.postRaw(q, body)
		}, 401},
		{"missing signature is 401", func() *http.Response { return hPlain.postRaw(url.Values{"timestamp": {now}}, good) }, 401},
		{"malformed XML is 400", func() *http.Response { return hPlain.post(wechat.ModePlain, []byte("<xml><ToUserName>")) }, 400},
		{"XML without required fields is 400", func() *http.Response { return hPlain.post(wechat.ModePlain, []byte("<xml><Content>x</Content></xml>")) }, 400},
		{"encrypted XML without required fields is 400", func() *http.Response {
			return h.post(wechat.ModeSafe, []byte("<xml><ToUserName>gh_1</ToUserName><Content>x</Content></xml>"))
		}, 400},
		{"body over 1 MiB is 413", func() *http.Response {
			big := append([]byte("<xml><Content>"), bytes.Repeat([]byte("a"), 1<<20)...)
			q, _ := hPlain.sign(wechat.ModePlain, good)
			return hPlain.postRaw(q, append(big, "</Content></xml>"...))
		}, 413},
		{"payload sealed for another appid is 401", func() *http.Response {
			q, body, _ := other.SignCallback(wechat.ModeSafe, good, "o", now, "2")
			return h.postRaw(q, body)
		}, 401},
		{"wrong method is 405", func() *http.Response {
			req, _ := http.NewRequest(http.MethodPut, h.http.URL+"/wechat/callback", nil)
			resp, _ := http.DefaultClient.Do(req)
			return resp
		}, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.do()
			readBody(t, resp)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	if n := h.count(); n != 0 {
		t.Fatalf("%d events published from bad input", n)
	}
}

func TestURLVerification(t *testing.T) {
	h := newHarness(t, setup{})
	now := strconv.FormatInt(time.Now().Unix(), 10)
	q := url.Values{"timestamp": {now}, "nonce": {"1320562132"}, "echostr": {"hello-echo"},
		"signature": {wechat.Signature(token, now, "1320562132")}}
	resp, _ := http.Get(h.http.URL + "/wechat/callback?" + q.Encode())
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "hello-echo" {
		t.Fatalf("plain verification: %d %q", resp.StatusCode, body)
	}
	q.Set("signature", strings.Repeat("1", 40))
	resp, _ = http.Get(h.http.URL + "/wechat/callback?" + q.Encode())
	if readBody(t, resp); resp.StatusCode != 401 {
		t.Fatalf("bad signature verification: %d", resp.StatusCode)
	}
}

func TestCustomerMessagesAreTransferredToTheQueue(t *testing.T) {
	// The migration setting accepts both forms, and each gets its own
	// form of reply.
	h := newHarness(t, setup{transfer: true, migration: true})
	text := `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oCustomer]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[人工客服]]></Content><MsgId>6054768590064713728</MsgId></xml>`
	resp := h.post(wechat.ModePlain, []byte(text))
	body := readBody(t, resp)
	cb, err := wechat.ParseCallback([]byte(body))
	if err != nil || cb.MsgType != "transfer_customer_service" || cb.ToUserName != "oCustomer" || cb.FromUserName != "gh_10f6c3c3ac5a" {
		t.Fatalf("plain reply %q: %v", body, err)
	}
	// An encrypted request gets an encrypted reply.
	text = strings.Replace(text, "6054768590064713728", "6054768590064713729", 1)
	resp = h.post(wechat.ModeSafe, []byte(text))
	body = readBody(t, resp)
	if !strings.Contains(body, "<Encrypt>") || strings.Contains(body, "transfer_customer_service") {
		t.Fatalf("reply to an encrypted request is not encrypted: %q", body)
	}
	plain, err := h.codec.OpenEnvelope([]byte(body))
	if err != nil || !strings.Contains(string(plain), "transfer_customer_service") {
		t.Fatalf("encrypted reply %q: %v", plain, err)
	}
	// Events are never transferred.
	if body := readBody(t, h.post(wechat.ModePlain, []byte(kfSwitch))); body != "success" {
		t.Fatalf("event reply %q", body)
	}
}

func TestNATSDownAnswers503AndRecoversWithoutRestart(t *testing.T) {
	opts := natstest.Options(t)
	opts.Port = freePort(t)
	h := newHarness(t, setup{nats: opts})
	h.srv.Shutdown()
	h.srv.WaitForShutdown()

	resp := h.post(wechat.ModeSafe, []byte(kfSwitch))
	if body := readBody(t, resp); resp.StatusCode != 503 || body == "success" {
		t.Fatalf("with NATS down: %d %q; want 503 and no success", resp.StatusCode, body)
	}
	httpapitest.CheckRetryAfter(t, resp.Header)

	restarted := natstest.Run(t, opts) // same port, same store
	natstest.Eventually(t, 15*time.Second, func() bool {
		resp = h.post(wechat.ModeSafe, []byte(kfSwitch))
		readBody(t, resp)
		return resp.StatusCode == 200
	}, "ingest recovering once NATS is back: a callback answered 200")
	_, js := natstest.Connect(t, restarted)
	s, _ := js.Stream(context.Background(), events.StreamWeChat)
	info, _ := s.Info(context.Background())
	if info.State.Msgs != 1 {
		t.Fatalf("%d events after recovery, want 1", info.State.Msgs)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type holdAll struct{ held []string }

func (h *holdAll) HoldTransfer(_ context.Context, openid, content string) bool {
	if content == "不等了" {
		h.held = append(h.held, openid)
		return true
	}
	return false
}

func TestAGateCanHoldATransfer(t *testing.T) {
	b, _ := bustest.Open(t, duplicateWindow(dupWindow), bustest.Streams(events.StreamWeChat))
	gate := &holdAll{}
	svc, err := ingest.New(ingest.Config{AppID: appID, Token: token, Transfer: true}, ingest.Deps{Publisher: b, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc)
	defer hs.Close()
	codec, _ := wechat.NewCodec(token, appID, "")
	for i, text := range []string{"不等了", "还在吗"} {
		plain := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oLeaving]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content><MsgId>%d</MsgId></xml>`, text, 100+i)
		q, body, _ := codec.SignCallback(wechat.ModePlain, []byte(plain), "oLeaving", strconv.FormatInt(time.Now().Unix(), 10), strconv.Itoa(i))
		resp, err := http.Post(hs.URL+"?"+q.Encode(), "text/xml", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		reply := readBody(t, resp)
		held := reply == "success"
		if held != (text == "不等了") {
			t.Errorf("%q answered %q", text, reply)
		}
	}
	if len(gate.held) != 1 {
		t.Errorf("gate consulted for %v", gate.held)
	}
}
