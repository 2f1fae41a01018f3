package notifier_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
	"github.com/kefu-io/kefu/services/notifier"
)

const linkSecret = "0123456789abcdef-test-secret"

func linkConfig(instance string) notifier.Config {
	cfg := testConfig(instance)
	cfg.PublicURL = "https://kefu.example.com"
	cfg.TucaoProductID = "4242"
	cfg.FeedbackLinkSecret = linkSecret
	return cfg
}

func TestEachSessionEventSendsItsMessageToTheCustomer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start(linkConfig("p1"))
	tests := []struct {
		name   string
		openid string
		event  func(openid string) (events.Event, string)
		kind   string
		want   *regexp.Regexp
	}{
		{"created names the agent by nickname", "o-created",
			func(o string) (events.Event, string) { return h.created(o, wang) }, events.NotifySessionCreated,
			regexp.MustCompile(`^客服 小王 正在为您服务$`)},
		{"switched names the new agent", "o-switched",
			func(o string) (events.Event, string) { return h.switched(o, wang, li) }, events.NotifySessionSwitched,
			regexp.MustCompile(`^已为您转接至客服 小李$`)},
		{"an agent getkflist does not know is named by account", "o-unknown-agent",
			func(o string) (events.Event, string) { return h.created(o, "zhao@gh_test") }, events.NotifySessionCreated,
			regexp.MustCompile(`^客服 zhao@gh_test 正在为您服务$`)},
		{"closed thanks with a signed feedback link", "o-closed",
			func(o string) (events.Event, string) { return h.closed(o, li) }, events.NotifySessionClosed,
			regexp.MustCompile(`^感谢您的咨询！欢迎对本次服务提出意见和建议：https://kefu\.example\.com/feedback/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.customer(tt.openid)
			ev, id := tt.event(tt.openid)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.outcomesByCause()[id]) == 1 }, "the outcome event")
			msgs := h.sent()[tt.openid]
			if len(msgs) != 1 {
				t.Fatalf("%d messages to %s, want 1", len(msgs), tt.openid)
			}
			if !tt.want.MatchString(msgs[0].Content) || msgs[0].MsgType != "text" {
				t.Errorf("message %s %q does not match %s", msgs[0].MsgType, msgs[0].Content, tt.want)
			}
			o := h.outcomesByCause()[id][0]
			if o.subject != events.SubjectNotifySent || o.id != "notify-"+id || o.Outcome != events.OutcomeSent ||
				o.Kind != tt.kind || o.OpenID != tt.openid || o.ErrCode != 0 || o.AppID != appID {
				t.Errorf("outcome %s %s %+v", o.subject, o.id, o.Notification)
			}
			if tt.kind != events.NotifySessionClosed && o.Text != msgs[0].Content {
				t.Errorf("outcome text %q, sent %q", o.Text, msgs[0].Content)
			}
			if tt.kind == events.NotifySessionClosed && (strings.Contains(o.Text, feedbackToken(msgs[0].Content)) || !strings.HasSuffix(o.Text, "/feedback/REDACTED")) {
				t.Errorf("the outcome event must not carry a working feedback login: %q", o.Text)
			}
		})
	}
}

func feedbackToken(text string) string {
	_, token, _ := strings.Cut(text, "/feedback/")
	return token
}

// oldFormatToken signs a token the way kefu did before pseudonyms, with
// the openid in the payload: links like it are still in customers' chats.
func oldFormatToken(openid string, expiry time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"o":%q,"e":%d}`, openid, expiry.Unix())))
	mac := hmac.New(sha256.New, []byte(linkSecret))
	mac.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestFeedbackLinkPage(t *testing.T) {
	h := newHarness(t, harnessOptions{fakeClock: true})
	cfg := linkConfig("p1")
	cfg.FeedbackLinkTTL = 24 * time.Hour
	p := h.start(cfg)
	mux := http.NewServeMux()
	p.svc.Routes(mux)
	web := httptest.NewServer(mux)
	defer web.Close()

	const openid, otherOpenID = "o-feedback-1", "o-feedback-2"
	keys, err := feedbacklink.NewKeys(linkSecret, "")
	if err != nil {
		t.Fatal(err)
	}
	pseudonym := keys.Pseudonym(openid)
	link := p.svc.FeedbackURL(openid)
	token := strings.TrimPrefix(link, "https://kefu.example.com/feedback/")
	if token == link || token == "" {
		t.Fatalf("link %q is not under the public URL", link)
	}
	payload, sig, _ := strings.Cut(token, ".")
	if decoded, _ := base64.RawURLEncoding.DecodeString(payload); strings.Contains(link, openid) || strings.Contains(string(decoded), openid) {
		t.Errorf("the link reveals the openid: %s (payload %s)", link, decoded)
	}
	other := feedbackToken(p.svc.FeedbackURL(otherOpenID))
	otherPayload, _, _ := strings.Cut(other, ".")
	old := oldFormatToken(openid, h.clock.Now().Add(24*time.Hour))
	oldPayload, _, _ := strings.Cut(old, ".")

	get := func(method, path string) (int, string, http.Header) {
		req, _ := http.NewRequest(method, web.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	form := []string{`action="https://support.qq.com/product/4242"`, `method="post"`, `name="openid" value="` + pseudonym + `"`,
		`name="nickname" value="微信用户"`, `name="avatar" value="https://kefu.example.com/feedback/avatar.png"`, `.submit()`}
	tests := []struct {
		name    string
		method  string
		path    string
		advance time.Duration
		status  int
		want    []string
		absent  []string
	}{
		{"a valid link posts the pseudonym, nickname and avatar to Tucao", "GET", "/feedback/" + token, 0, 200, form, nil},
		{"a link issued before pseudonyms posts the pseudonym, not its openid", "GET", "/feedback/" + old, 0, 200, form, nil},
		{"another customer's pseudonym under this signature is rejected", "GET", "/feedback/" + otherPayload + "." + sig, 0, 400,
			[]string{"链接无效"}, []string{keys.Pseudonym(otherOpenID), pseudonym, "<form"}},
		{"an old link's openid swapped under its signature is rejected", "GET", "/feedback/" + strings.Replace(old, oldPayload,
			base64.RawURLEncoding.EncodeToString([]byte(`{"o":"`+otherOpenID+`","e":9999999999}`)), 1), 0, 400,
			[]string{"链接无效"}, []string{keys.Pseudonym(otherOpenID), "<form"}},
		{"a changed signature is rejected", "GET", "/feedback/" + payload + "." + strings.Repeat("A", len(sig)), 0, 400, []string{"链接无效"}, []string{"<form"}},
		{"a link without signature is rejected", "GET", "/feedback/" + payload, 0, 400, nil, []string{"<form"}},
		{"other methods are not allowed", "POST", "/feedback/" + token, 0, 405, nil, nil},
		{"an expired link is gone, with the anonymous page offered", "GET", "/feedback/" + token, 25 * time.Hour, 410,
			[]string{"链接已过期", `href="https://support.qq.com/product/4242"`}, []string{pseudonym, "<form"}},
		// The clock is still 25 h on from the case before.
		{"an expired old link is gone too", "GET", "/feedback/" + old, 0, 410, []string{"链接已过期"}, []string{pseudonym, "<form"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.clock.Advance(tt.advance)
			status, body, header := get(tt.method, tt.path)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %s:\n%s", w, body)
				}
			}
			// No page, whatever the token, shows an openid.
			for _, a := range append(tt.absent, openid, otherOpenID) {
				if strings.Contains(body, a) {
					t.Errorf("page must not contain %s:\n%s", a, body)
				}
			}
			if tt.method == "GET" && (header.Get("Referrer-Policy") != "no-referrer" || header.Get("Cache-Control") != "no-store" ||
				!strings.Contains(header.Get("Content-Security-Policy"), "form-action https://support.qq.com")) {
				t.Errorf("headers %v", header)
			}
		})
	}
	status, body, header := get("GET", "/feedback/avatar.png")
	if status != 200 || header.Get("Content-Type") != "image/png" || !strings.HasPrefix(body, "\x89PNG") {
		t.Errorf("avatar: %d %s", status, header.Get("Content-Type"))
	}
}

func TestClosedSessionLinkWithoutPublicURLOrProduct(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(notifier.Config) notifier.Config
		want    string
		noRoute bool
	}{
		{"without a public URL the link is Tucao's page, anonymous", func(c notifier.Config) notifier.Config {
			c.TucaoProductID = "4242"
			return c
		}, "感谢您的咨询！欢迎对本次服务提出意见和建议：https://support.qq.com/product/4242", true},
		{"without a product there is no link", func(c notifier.Config) notifier.Config { return c }, notifier.DefaultSessionClosedNoLink, true},
		{"a custom template is used", func(c notifier.Config) notifier.Config {
			c.TucaoProductID = "4242"
			c.Templates.SessionClosed = "谢谢！{nickname}：{feedback_url}"
			return c
		}, "谢谢！小李：https://support.qq.com/product/4242", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			p := h.start(tt.cfg(testConfig("p1")))
			h.customer("o-1")
			ev, id := h.closed("o-1", li)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.sent()["o-1"]) == 1 }, "the message")
			if got := h.sent()["o-1"][0].Content; got != tt.want {
				t.Errorf("message %q, want %q", got, tt.want)
			}
			mux := http.NewServeMux()
			p.svc.Routes(mux)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", "/feedback/x.y", nil))
			if rec.Code != http.StatusNotFound {
				t.Errorf("without signed links the page must be 404, got %d", rec.Code)
			}
		})
	}
}

func TestDuplicatesAndReplaysSendOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	p := h.start(testConfig("p1"))
	h.customer("o-dup")
	ev, id := h.created("o-dup", wang)
	h.publish(ev, id)
	h.publish(ev, id) // JetStream drops this one (same Nats-Msg-Id)
	h.replay(ev, id, 1)
	h.replay(ev, id, 2)
	natstest.Eventually(t, patience, func() bool { return handled(p) == 3 }, "three deliveries handled")
	natstest.Eventually(t, patience, func() bool { return h.drained(events.StreamWeChat, notifier.DurableSessions) }, "the consumer to drain")
	// Much later, a replay of the stream.
	h.replay(ev, id, 3)
	natstest.Eventually(t, patience, func() bool { return handled(p) == 4 }, "the replay handled")

	if n := len(h.sent()["o-dup"]); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	if n := len(h.outcomesByCause()[id]); n != 1 {
		t.Errorf("%d outcome events, want 1", n)
	}
	if c := p.counted(); c["session_created/sent"] != 1 || c["session_created/duplicate"] != 3 {
		t.Errorf("counted %v", c)
	}
}

func TestStopDuringSlowSendsThenRestartSendsEachOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const n = 12
	var ids []string
	for i := range n {
		h.customer(fmt.Sprintf("o-%02d", i))
	}
	h.wx.SetLatency(wechattest.MethodCustomSend, 300*time.Millisecond)
	cfg := testConfig("p1")
	cfg.Concurrency = 2
	cfg.MaxAckPending = 2
	cfg.Backoff = []time.Duration{time.Second} // handed-back events wait for the restart
	p1 := h.start(cfg)
	for i := range n {
		ev, id := h.created(fmt.Sprintf("o-%02d", i), wang)
		h.publish(ev, id)
		ids = append(ids, id)
	}
	natstest.Eventually(t, patience, func() bool { return len(h.wx.Sent()) >= 2 }, "the first sends")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p1.svc.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	before := len(h.wx.Sent())
	if before >= n {
		t.Fatalf("all %d sent before the stop; the test proves nothing", before)
	}
	// Sends in progress finished and were recorded.
	if got := len(h.outcomes()); got != before {
		t.Errorf("%d messages sent but %d outcomes recorded at stop", before, got)
	}

	h.wx.SetLatency(wechattest.MethodCustomSend, 0)
	cfg.Instance = "p2"
	h.start(cfg)
	natstest.Eventually(t, patience, func() bool {
		return len(h.outcomes()) == n && h.drained(events.StreamWeChat, notifier.DurableSessions)
	}, "every event handled")
	for i := range n {
		o := fmt.Sprintf("o-%02d", i)
		if got := len(h.sent()[o]); got != 1 {
			t.Errorf("%s got %d messages, want 1", o, got)
		}
	}
	for _, id := range ids {
		if got := h.outcomesByCause()[id]; len(got) != 1 || got[0].Outcome != events.OutcomeSent {
			t.Errorf("cause %s: outcomes %+v", id, got)
		}
	}
}

func TestStopCancellingSendsNeverSendsTwice(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const n = 6
	for i := range n {
		h.customer(fmt.Sprintf("o-%02d", i))
	}
	h.wx.SetLatency(wechattest.MethodCustomSend, time.Second)
	cfg := testConfig("p1")
	cfg.Concurrency = 2
	p1 := h.start(cfg)
	for i := range n {
		ev, id := h.created(fmt.Sprintf("o-%02d", i), wang)
		h.publish(ev, id)
	}
	natstest.Eventually(t, patience, func() bool { return h.wx.CallCount(wechattest.MethodCustomSend) >= 2 }, "two sends in flight")
	expired, cancel := context.WithCancel(context.Background())
	cancel() // no patience: cancel the sends in flight, as a kill would cut them
	p1.svc.Stop(expired)

	h.wx.SetLatency(wechattest.MethodCustomSend, 0)
	cfg.Instance = "p2"
	h.start(cfg)
	natstest.Eventually(t, patience, func() bool {
		return len(h.outcomes()) == n && h.drained(events.StreamWeChat, notifier.DurableSessions)
	}, "every event handled")
	unknown := 0
	for _, outs := range h.outcomesByCause() {
		if len(outs) != 1 {
			t.Errorf("cause %s has %d outcomes", outs[0].CauseEventID, len(outs))
			continue
		}
		o := outs[0]
		got := len(h.sent()[o.OpenID])
		switch {
		case o.Outcome == events.OutcomeSent && got == 1:
		case o.Outcome == events.OutcomeFailed && strings.HasPrefix(o.ErrMsg, "unknown outcome") && got <= 1:
			unknown++
		default:
			t.Errorf("%s: outcome %s %q with %d messages", o.OpenID, o.Outcome, o.ErrMsg, got)
		}
	}
	if unknown == 0 {
		t.Error("the cancelled sends must be recorded as unknown outcomes")
	}
}

func TestPermanentErrorsFailWithoutRetry(t *testing.T) {
	tests := []struct {
		name    string
		wx      func(*wechattest.Config)
		prepare func(h *harness) // before the event
		code    int
	}{
		{"45015: the customer has not written within 48 hours (here: 1 ms)",
			func(c *wechattest.Config) { c.ReplyWindow = time.Millisecond },
			func(h *harness) { h.customer("o-1"); time.Sleep(2 * time.Millisecond) }, 45015},
		{"45047: too many messages since the customer last wrote",
			func(c *wechattest.Config) { c.MaxMessagesPerInteraction = 1 },
			func(h *harness) {
				h.customer("o-1")
				ev, id := h.switched("o-1", wang, li)
				h.publish(ev, id)
				natstest.Eventually(h.t, patience, func() bool { return len(h.wx.Sent()) == 1 }, "the first message")
			}, 45047},
		{"65400 and the other 多客服 codes", nil, func(h *harness) {
			h.customer("o-1")
			h.wx.InjectErrors(wechattest.MethodCustomSend, 65400, 1)
		}, 65400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{wx: tt.wx})
			p := h.start(testConfig("p1"))
			tt.prepare(h)
			calls := h.wx.CallCount(wechattest.MethodCustomSend)
			ev, id := h.created("o-1", wang)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.outcomesByCause()[id]) == 1 }, "the outcome")
			natstest.Eventually(t, patience, func() bool { return h.drained(events.StreamWeChat, notifier.DurableSessions) }, "the consumer to drain")
			o := h.outcomesByCause()[id][0]
			if o.subject != events.SubjectNotifyFailed || o.ErrCode != tt.code || o.ErrMsg == "" || o.Text != "客服 小王 正在为您服务" {
				t.Errorf("outcome %s %+v", o.subject, o.Notification)
			}
			if got := h.wx.CallCount(wechattest.MethodCustomSend) - calls; got != 1 {
				t.Errorf("custom/send called %d times, want 1 (no retry)", got)
			}
			if c := p.counted(); c["session_created/failed"] != 1 || c["session_created/retry"] != 0 {
				t.Errorf("counted %v", c)
			}
		})
	}
}

func TestTransientErrorsAreRetriedAndSendOnce(t *testing.T) {
	tests := []struct {
		name       string
		maxDeliver int
		inject     func(h *harness)
		outcome    string
		code       int
		calls      int // custom/send calls for the event
	}{
		{"-1 twice then ok: one message", 5, func(h *harness) { h.wx.InjectErrors(wechattest.MethodCustomSend, -1, 2) }, events.OutcomeSent, 0, 3},
		{"-1 beyond the client's retries: redelivered, then one message", 5,
			func(h *harness) { h.wx.InjectErrors(wechattest.MethodCustomSend, -1, 6) }, events.OutcomeSent, 0, 7},
		// -1 is documented as not carried out: retried past MaxDeliver for as
		// long as it lasts, never recorded as failed.
		{"-1 beyond MaxDeliver deliveries: still retried, then one message", 2,
			func(h *harness) { h.wx.InjectErrors(wechattest.MethodCustomSend, -1, 8) }, events.OutcomeSent, 0, 9},
		{"a rejected access token is refreshed: one message", 5, func(h *harness) { h.wx.InvalidateTokens() }, events.OutcomeSent, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			cfg := testConfig("p1")
			cfg.MaxDeliver = tt.maxDeliver
			h.start(cfg)
			// A first message fetches the access token.
			h.customer("o-warm", "o-1")
			ev, id := h.created("o-warm", wang)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.sent()["o-warm"]) == 1 }, "the first message")
			calls := h.wx.CallCount(wechattest.MethodCustomSend)

			tt.inject(h)
			ev, id = h.created("o-1", wang)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.outcomesByCause()[id]) == 1 }, "the outcome")
			natstest.Eventually(t, patience, func() bool { return h.drained(events.StreamWeChat, notifier.DurableSessions) }, "the consumer to drain")
			o := h.outcomesByCause()[id][0]
			if o.Outcome != tt.outcome || o.ErrCode != tt.code {
				t.Errorf("outcome %s errcode %d, want %s %d", o.Outcome, o.ErrCode, tt.outcome, tt.code)
			}
			wantMsgs := 0
			if tt.outcome == events.OutcomeSent {
				wantMsgs = 1
			}
			if got := len(h.sent()["o-1"]); got != wantMsgs {
				t.Errorf("%d messages, want %d", got, wantMsgs)
			}
			if got := h.wx.CallCount(wechattest.MethodCustomSend) - calls; got != tt.calls {
				t.Errorf("custom/send called %d times, want %d", got, tt.calls)
			}
		})
	}
}

func TestWaitMessagesAreThrottled(t *testing.T) {
	h := newHarness(t, harnessOptions{fakeClock: true})
	p := h.start(testConfig("p1"))
	const o = "o-waiting"
	h.customer(o)
	type step struct {
		name    string
		advance time.Duration
		event   func() (events.Event, string)
		sends   string // the message this step sends; "" none
	}
	wait := func(pos int, secs int64) func() (events.Event, string) {
		return func() (events.Event, string) { return h.wait(o, pos, secs) }
	}
	steps := []step{
		{"entering the queue is announced", 0, wait(5, 600), "您前面还有 4 位，预计等待约 10 分钟"},
		{"nothing within 3 minutes", 30 * time.Second, wait(5, 900), ""},
		{"a change under 2 minutes is not told", 3*time.Minute + 30*time.Second, wait(3, 630), ""},
		{"a change of 2 minutes and 30 % is told", time.Minute, wait(2, 300), "您前面还有 1 位，预计等待约 5 分钟"},
		{"and then nothing for 3 minutes again", time.Minute, wait(1, 60), ""},
		{"an estimate too old to tell is dropped", 4 * time.Minute, func() (events.Event, string) {
			ev, id := h.wait(o, 1, 30)
			e := ev.(events.WaitEstimated)
			e.OccurredAt = e.OccurredAt.Add(-5 * time.Minute)
			return e, id
		}, ""},
		{"the session starts", time.Minute, func() (events.Event, string) { return h.created(o, wang) }, "客服 小王 正在为您服务"},
		{"an estimate made before the session but handled after is dropped", 10 * time.Second, func() (events.Event, string) {
			ev, id := h.wait(o, 1, 30)
			e := ev.(events.WaitEstimated)
			e.OccurredAt = e.OccurredAt.Add(-20 * time.Second)
			return e, id
		}, ""},
		{"nothing while the session is open", 5 * time.Minute, wait(1, 400), ""},
		{"the session ends", 5 * time.Minute, func() (events.Event, string) { return h.closed(o, wang) }, notifier.DefaultSessionClosedNoLink},
		{"queueing again is a new visit", time.Minute, wait(2, 400), "您前面还有 1 位，预计等待约 7 分钟"},
	}
	var want []string
	for i, st := range steps {
		h.clock.Advance(st.advance)
		ev, id := st.event()
		h.publish(ev, id)
		natstest.Eventually(t, patience, func() bool { return handled(p) == i+1 }, "%s", st.name)
		if st.sends != "" {
			want = append(want, st.sends)
		}
		var got []string
		for _, m := range h.sent()[o] {
			got = append(got, m.Content)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("after %q the customer has\n%s\nwant\n%s", st.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if c := p.counted(); c["wait_estimated/sent"] != 3 || c["wait_estimated/throttled"] != 3 || c["wait_estimated/skipped"] != 3 {
		t.Errorf("counted %v", c)
	}
}

// TestFirstInLine: the default wait text for the customer first in line
// says so instead of "0 ahead"; a configured wait template is used as is.
func TestFirstInLine(t *testing.T) {
	tests := []struct {
		name     string
		template string
		want     string
	}{
		{"default text", "", "您是下一位，预计等待约 2 分钟"},
		{"the default set explicitly", notifier.DefaultWaitEstimated, "您是下一位，预计等待约 2 分钟"},
		{"a configured template", "排在第 {position} 位，前面 {ahead} 位，约 {minutes} 分钟", "排在第 1 位，前面 0 位，约 2 分钟"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			cfg := testConfig("p1")
			cfg.Templates.WaitEstimated = tt.template
			h.start(cfg)
			h.customer("o-first")
			ev, id := h.wait("o-first", 1, 90)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.sent()["o-first"]) == 1 }, "the message")
			if got := h.sent()["o-first"][0].Content; got != tt.want {
				t.Errorf("message %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTwoProcessesShareTheWorkAndSendOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const customers, waiting = 60, 10
	var openids, waiters []string
	for i := range customers {
		openids = append(openids, fmt.Sprintf("o-%03d", i))
	}
	for i := range waiting {
		waiters = append(waiters, fmt.Sprintf("w-%03d", i))
	}
	h.customer(openids...)
	h.customer(waiters...)
	p1 := h.start(testConfig("p1"))
	p2 := h.start(testConfig("p2"))
	for i, o := range openids {
		ev, id := h.created(o, wang)
		h.publish(ev, id)
		if i%3 == 0 { // a replay of some, outside the de-duplication window
			h.replay(ev, id, 1)
			h.replay(ev, id, 2)
		}
	}
	// Two different estimates for one customer at once: both would be
	// "entering the queue"; only one may be sent.
	for _, o := range waiters {
		ev, id := h.wait(o, 3, 300)
		h.publish(ev, id+"-a")
		ev, id = h.wait(o, 3, 320)
		h.publish(ev, id+"-b")
	}
	natstest.Eventually(t, patience, func() bool {
		return handled(p1, p2) == customers+2*(customers/3)+2*waiting &&
			h.drained(events.StreamWeChat, notifier.DurableSessions) && h.drained(events.StreamKF, notifier.DurableWait)
	}, "every event handled")
	sent := h.sent()
	for _, o := range openids {
		if got := sent[o]; len(got) != 1 || got[0].Content != "客服 小王 正在为您服务" {
			t.Errorf("%s got %d messages %v, want the session message once", o, len(got), got)
		}
	}
	for _, o := range waiters {
		if got := sent[o]; len(got) != 1 || !strings.HasPrefix(got[0].Content, "您前面还有 2 位") {
			t.Errorf("%s got %d messages, want one wait message", o, len(got))
		}
	}
	c1, c2 := p1.counted(), p2.counted()
	if c1["session_created/sent"] == 0 || c2["session_created/sent"] == 0 {
		t.Errorf("both processes must share the work: %v / %v", c1, c2)
	}
	if c1["session_created/sent"]+c2["session_created/sent"] != customers {
		t.Errorf("sent %v + %v, want %d", c1["session_created/sent"], c2["session_created/sent"], customers)
	}
}

func TestUndecodableEventsGoToTheDeadLetterSubject(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start(testConfig("p1"))
	h.customer("o-1")
	poison := []struct{ subject, body string }{
		{events.SubjectSessionCreated, `{"openid": `},
		{events.SubjectSessionClosed, `{"kf_account": "wang@gh_test"}`},
		{events.SubjectWaitEstimated, `[1, 2]`},
	}
	for i, m := range poison {
		if _, err := h.pub.PublishRaw(context.Background(), m.subject, []byte(m.body), busEnvelope(fmt.Sprintf("poison-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	ev, id := h.created("o-1", wang)
	h.publish(ev, id)
	natstest.Eventually(t, patience, func() bool {
		s, err := h.pub.Stream(context.Background(), events.StreamDLQ)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == uint64(len(poison))
	}, "the dead letters")
	natstest.Eventually(t, patience, func() bool { return len(h.sent()["o-1"]) == 1 }, "the good event")
	s, _ := h.pub.Stream(context.Background(), events.StreamDLQ)
	m, err := s.GetLastMsgForSubject(context.Background(), events.DLQSubject(notifier.Role))
	if err != nil || m.Header.Get("Kefu-Dlq-Consumer") == "" {
		t.Errorf("dead letter %v: %v", m, err)
	}
}

func TestDisabledKindsAndOldEventsAreNotSent(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	cfg := testConfig("p1")
	cfg.Disabled = []string{events.NotifySessionSwitched}
	p := h.start(cfg)
	h.customer("o-1", "o-2", "o-3")
	ev, id := h.switched("o-1", wang, li)
	h.publish(ev, id)
	old, oldID := h.created("o-2", wang)
	e := old.(events.SessionCreated)
	e.ReceivedAt = e.ReceivedAt.Add(-time.Hour)
	h.publish(e, oldID)
	ev, id = h.created("o-3", wang)
	h.publish(ev, id)
	natstest.Eventually(t, patience, func() bool { return handled(p) == 3 }, "three events handled")
	if s := h.sent(); len(s["o-1"]) != 0 || len(s["o-2"]) != 0 || len(s["o-3"]) != 1 {
		t.Errorf("sent %v", s)
	}
	if c := p.counted(); c["session_switched/skipped"] != 1 || c["session_created/skipped"] != 1 {
		t.Errorf("counted %v", c)
	}
}

// Another part of kefu can hold messages back: a customer who left the
// queue gets neither wait messages nor the "now served" announcement of
// the case WeChat still had for them.
func TestSuppressedMessagesAreNotSent(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.suppress = func(_ context.Context, kind, openid string) (bool, error) { return openid == "o-left", nil }
	p := h.start(testConfig("p1"))
	h.customer("o-left", "o-stays")
	for _, openid := range []string{"o-left", "o-stays"} {
		ev, id := h.created(openid, wang)
		h.publish(ev, id)
	}
	natstest.Eventually(t, patience, func() bool { return handled(p) == 2 }, "two events handled")
	if s := h.sent(); len(s["o-left"]) != 0 || len(s["o-stays"]) != 1 {
		t.Errorf("sent %v", s)
	}
	if c := p.counted(); c["session_created/skipped"] != 1 {
		t.Errorf("counted %v", c)
	}
}

// The whole path: the fake WeChat queues a customer, an agent accepts,
// WeChat's callbacks go through ingest onto the bus, and the notifier
// messages the customer.
func TestSessionCallbacksThroughIngestReachTheCustomer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if err := h.pub.EnsureStreams(context.Background(), events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ingest.Config{AppID: appID, Token: cbToken, Transfer: true}, ingest.Deps{Publisher: h.pub})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	in.Routes(mux)
	web := httptest.NewServer(mux)
	defer web.Close()
	h.wx.SetCallbackURL(web.URL + "/wechat/callback")
	h.start(linkConfig("p1"))

	const o = "o-through-ingest"
	h.customer(o) // ingest answers transfer_customer_service: the customer queues
	if err := h.wx.SetAutoAccept(wang, 3); err != nil {
		t.Fatal(err)
	}
	if err := h.wx.SetAgentStatus(wang, wechattest.StatusBoth); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, patience, func() bool { return len(h.sent()[o]) == 1 }, "the session message")
	if err := h.wx.SetAgentStatus(li, wechattest.StatusBoth); err != nil {
		t.Fatal(err)
	}
	if err := h.wx.SwitchSession(o, li); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, patience, func() bool { return len(h.sent()[o]) == 2 }, "the transfer message")
	if err := h.wx.CloseSession(o); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, patience, func() bool { return len(h.sent()[o]) == 3 }, "the thank-you")
	msgs := h.sent()[o]
	if msgs[0].Content != "客服 小王 正在为您服务" || msgs[1].Content != "已为您转接至客服 小李" ||
		!strings.HasPrefix(msgs[2].Content, "感谢您的咨询！欢迎对本次服务提出意见和建议：https://kefu.example.com/feedback/") {
		t.Errorf("messages %q / %q / %q", msgs[0].Content, msgs[1].Content, msgs[2].Content)
	}
}
