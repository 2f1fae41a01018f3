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
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
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
	http   *httptest.Server
	codec  *wechat.Codec
	stream jetstream.Stream
}

func newHarness(t *testing.T, opts *server.Options, transfer bool) *harness {
	t.Helper()
	srv := natstest.Run(t, opts)
	b, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(context.Background(), events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	svc, err := ingest.New(ingest.Config{AppID: appID, Token: token, AESKey: aesKey, Transfer: transfer, PublishTimeout: time.Second},
		ingest.Deps{Publisher: b})
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
	stream, err := b.JS.Stream(context.Background(), events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, bus: b, http: hs, codec: codec, stream: stream}
}

func (h *harness) post(mode wechat.Mode, plain []byte) *http.Response {
	h.t.Helper()
	q, body, err := h.codec.SignCallback(mode, plain, "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "1409735669", "1320562132")
	if err != nil {
		h.t.Fatal(err)
	}
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
	h := newHarness(t, nil, false)
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
			before := h.count()
			resp := h.post(mode, plain)
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
	h := newHarness(t, nil, false)
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
	h := newHarness(t, nil, false)
	for i := 0; i < 4; i++ { // WeChat's first try and three retries
		resp := h.post(wechat.ModeSafe, []byte(kfSwitch))
		if body := readBody(t, resp); resp.StatusCode != 200 || body != "success" {
			t.Fatalf("try %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := h.count(); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
}

func TestBadInputIsRejectedAndNeverPublished(t *testing.T) {
	h := newHarness(t, nil, false)
	other, _ := wechat.NewCodec(token, "wxOTHERAPPID000000", aesKey)
	good := []byte(kfSwitch)
	tests := []struct {
		name   string
		do     func() *http.Response
		status int
	}{
		{"bad signature is 401", func() *http.Response {
			q, body, _ := h.codec.SignCallback(wechat.ModePlain, good, "o", "1", "2")
			q.Set("signature", strings.Repeat("0", 40))
			return h.postRaw(q, body)
		}, 401},
		{"bad msg_signature is 401", func() *http.Response {
			q, body, _ := h.codec.SignCallback(wechat.ModeSafe, good, "o", "1", "2")
			q.Set("msg_signature", strings.Repeat("0", 40))
			return h.postRaw(q, body)
		}, 401},
		{"missing signature is 401", func() *http.Response { return h.postRaw(url.Values{}, good) }, 401},
		{"malformed XML is 400", func() *http.Response { return h.post(wechat.ModePlain, []byte("<xml><ToUserName>")) }, 400},
		{"XML without required fields is 400", func() *http.Response { return h.post(wechat.ModePlain, []byte("<xml><Content>x</Content></xml>")) }, 400},
		{"body over 1 MiB is 413", func() *http.Response {
			big := append([]byte("<xml><Content>"), bytes.Repeat([]byte("a"), 1<<20)...)
			q, _, _ := h.codec.SignCallback(wechat.ModePlain, good, "o", "1", "2")
			return h.postRaw(q, append(big, "</Content></xml>"...))
		}, 413},
		{"payload sealed for another appid is 401", func() *http.Response {
			q, body, _ := other.SignCallback(wechat.ModeSafe, good, "o", "1", "2")
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
	h := newHarness(t, nil, false)
	q := url.Values{"timestamp": {"1409735669"}, "nonce": {"1320562132"}, "echostr": {"hello-echo"},
		"signature": {wechat.Signature(token, "1409735669", "1320562132")}}
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
	h := newHarness(t, nil, true)
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
	h := newHarness(t, opts, false)
	h.srv.Shutdown()
	h.srv.WaitForShutdown()

	resp := h.post(wechat.ModePlain, []byte(kfSwitch))
	if body := readBody(t, resp); resp.StatusCode != 503 || body == "success" {
		t.Fatalf("with NATS down: %d %q; want 503 and no success", resp.StatusCode, body)
	}

	restarted := natstest.Run(t, opts) // same port, same store
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp = h.post(wechat.ModePlain, []byte(kfSwitch))
		if readBody(t, resp); resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest did not recover: %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	srv := natstest.Run(t, nil)
	b, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.EnsureStreams(context.Background(), events.StreamWeChat)
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
		q, body, _ := codec.SignCallback(wechat.ModePlain, []byte(plain), "oLeaving", "1", "2")
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
