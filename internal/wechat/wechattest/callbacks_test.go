package wechattest

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

type received struct {
	query url.Values
	body  []byte
}

// receiver is a callback endpoint; answer decides each response (default
// 200 "success").
type receiver struct {
	mu     sync.Mutex
	got    []received
	answer func(n int, r *http.Request, body []byte) (int, []byte)
	srv    *httptest.Server
}

func newReceiver(t *testing.T, f *fake, answer func(n int, r *http.Request, body []byte) (int, []byte)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{query: r.URL.Query(), body: body})
		n := len(rc.got)
		rc.mu.Unlock()
		status, reply := http.StatusOK, []byte("success")
		if rc.answer != nil {
			status, reply = rc.answer(n, r, body)
		}
		w.WriteHeader(status)
		_, _ = w.Write(reply)
	}))
	t.Cleanup(rc.srv.Close)
	f.srv.SetCallbackURL(rc.srv.URL + "/wechat/callback")
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

type callbackXML struct {
	ToUserName    string
	FromUserName  string
	CreateTime    int64
	MsgType       string
	Event         string
	KfAccount     string
	FromKfAccount string
	ToKfAccount   string
	Content       string
	MsgId         int64
	EventKey      string
}

func testCodec(t *testing.T) *wechat.Codec {
	t.Helper()
	c, err := wechat.NewCodec(testToken, testAppID, testAESKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// open verifies and decrypts a received callback as kefu's ingest would.
func open(t *testing.T, r received) (callbackXML, bool) {
	t.Helper()
	plain, encrypted, err := testCodec(t).Open(r.query, r.body)
	if err != nil {
		t.Fatalf("Codec.Open: %v\nquery %v\nbody %s", err, r.query, r.body)
	}
	var doc callbackXML
	if err := xml.Unmarshal(plain, &doc); err != nil {
		t.Fatalf("decode %s: %v", plain, err)
	}
	return doc, encrypted
}

func (f *fake) waitCallbacks() {
	f.t.Helper()
	if err := f.srv.WaitCallbacks(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
}

func TestCallbacksAreSignedInEveryMode(t *testing.T) {
	tests := []struct {
		name      string
		mode      wechat.Mode
		encrypted bool
	}{
		{"plain mode carries signature and the XML", wechat.ModePlain, false},
		{"compat mode adds a decryptable Encrypt", wechat.ModeCompat, true},
		{"safe mode sends only the ciphertext", wechat.ModeSafe, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, func(c *Config) { c.Mode = tt.mode; c.OriginalID = "gh_10f6c3c3ac5a" })
			rc := newReceiver(t, f, nil)
			f.agent("alice@shop", 1)
			f.transfer("oCustomer1", "")
			f.waitCallbacks()

			reqs := rc.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d callbacks, want 1", len(reqs))
			}
			doc, encrypted := open(t, reqs[0])
			if encrypted != tt.encrypted {
				t.Fatalf("encrypted = %v, want %v", encrypted, tt.encrypted)
			}
			want := callbackXML{
				ToUserName: "gh_10f6c3c3ac5a", FromUserName: "oCustomer1", CreateTime: testStart.Unix(),
				MsgType: "event", Event: "kf_create_session", KfAccount: "alice@shop",
			}
			if doc != want {
				t.Fatalf("callback = %+v\nwant %+v", doc, want)
			}
			if reqs[0].query.Get("openid") != "oCustomer1" {
				t.Fatalf("query openid = %q", reqs[0].query.Get("openid"))
			}
			if tt.mode == wechat.ModeSafe && bytes.Contains(reqs[0].body, []byte("kf_create_session")) {
				t.Fatal("safe-mode body leaks the plaintext")
			}
			if d := f.srv.Deliveries()[0]; d.Status != DeliveryDelivered || d.Attempts != 1 || d.ReplyError != "" {
				t.Fatalf("delivery = %+v", d)
			}
		})
	}
}

func TestCallbackRetries(t *testing.T) {
	t.Run("a receiver answering 500 gets the same callback again until it answers 200", func(t *testing.T) {
		f := newFake(t, nil)
		rc := newReceiver(t, f, func(n int, _ *http.Request, _ []byte) (int, []byte) {
			if n <= 2 {
				return http.StatusInternalServerError, nil
			}
			return http.StatusOK, []byte("success")
		})
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		f.clock.Advance(time.Minute) // retries keep the event's CreateTime
		f.waitCallbacks()

		reqs := rc.requests()
		if len(reqs) != 3 {
			t.Fatalf("%d attempts, want 3", len(reqs))
		}
		for _, r := range reqs[1:] {
			if !bytes.Equal(r.body, reqs[0].body) || r.query.Encode() != reqs[0].query.Encode() {
				t.Fatal("a retry differs from the first attempt")
			}
		}
		if doc, _ := open(t, reqs[2]); doc.CreateTime != testStart.Unix() {
			t.Fatalf("CreateTime = %d, want the event time", doc.CreateTime)
		}
		d := f.srv.Deliveries()[0]
		if d.Status != DeliveryDelivered || d.Attempts != 3 || d.HTTPStatus != 200 {
			t.Fatalf("delivery = %+v", d)
		}
	})
	t.Run("a receiver that keeps failing gets the first attempt and three retries", func(t *testing.T) {
		f := newFake(t, nil)
		rc := newReceiver(t, f, func(int, *http.Request, []byte) (int, []byte) {
			return http.StatusServiceUnavailable, nil
		})
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		f.waitCallbacks()
		if n := len(rc.requests()); n != 4 {
			t.Fatalf("%d attempts, want 4", n)
		}
		if d := f.srv.Deliveries()[0]; d.Status != DeliveryFailed || d.Attempts != 4 || d.Error != "HTTP 503" {
			t.Fatalf("delivery = %+v", d)
		}
	})
	t.Run("an answer slower than the callback timeout is retried", func(t *testing.T) {
		f := newFake(t, func(c *Config) { c.CallbackTimeout = 50 * time.Millisecond })
		rc := newReceiver(t, f, func(n int, r *http.Request, _ []byte) (int, []byte) {
			if n == 1 {
				<-r.Context().Done() // hold the first attempt until WeChat gives up on it
			}
			return http.StatusOK, nil
		})
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		f.waitCallbacks()
		if n := len(rc.requests()); n != 2 {
			t.Fatalf("%d attempts, want 2", n)
		}
		if d := f.srv.Deliveries()[0]; d.Status != DeliveryDelivered || d.Attempts != 2 {
			t.Fatalf("delivery = %+v", d)
		}
	})
}

// passiveReply builds a reply XML from the account to openid.
func passiveReply(openid, msgType, inner string) []byte {
	return []byte(fmt.Sprintf("<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[%s]]></MsgType>%s</xml>",
		openid, "gh_10f6c3c3ac5a", testStart.Unix(), msgType, inner))
}

func TestReplies(t *testing.T) {
	transfer := passiveReply("o1", "transfer_customer_service", "")
	pinned := passiveReply("o1", "transfer_customer_service", "<TransInfo><KfAccount><![CDATA[bob@shop]]></KfAccount></TransInfo>")
	seal := func(t *testing.T, plain []byte) []byte {
		env, _, err := testCodec(t).Seal(plain, "1409735669", "1320562132")
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	tests := []struct {
		name      string
		mode      wechat.Mode
		ignore    bool
		reply     func(t *testing.T) []byte
		replyType string
		problem   bool
		servedBy  string // "" when the customer must not be queued or served
		waiting   bool
	}{
		{name: "success is a valid answer", reply: func(*testing.T) []byte { return []byte("success") }},
		{name: "an empty body is a valid answer", reply: func(*testing.T) []byte { return nil }},
		{name: "a text reply is valid", reply: func(*testing.T) []byte {
			return passiveReply("o1", "text", "<Content><![CDATA[稍等]]></Content>")
		}, replyType: "text"},
		{name: "a transfer reply queues the customer, who an agent then takes", reply: func(*testing.T) []byte { return transfer },
			replyType: "transfer_customer_service", servedBy: "alice@shop"},
		{name: "a transfer reply naming an agent makes the customer wait for that agent", reply: func(*testing.T) []byte { return pinned },
			replyType: "transfer_customer_service", waiting: true},
		{name: "an encrypted transfer reply works in safe mode", mode: wechat.ModeSafe, reply: func(t *testing.T) []byte { return seal(t, transfer) },
			replyType: "transfer_customer_service", servedBy: "alice@shop"},
		{name: "an encrypted transfer reply works in compat mode", mode: wechat.ModeCompat, reply: func(t *testing.T) []byte { return seal(t, transfer) },
			replyType: "transfer_customer_service", servedBy: "alice@shop"},
		{name: "a plaintext reply is refused in safe mode", mode: wechat.ModeSafe, reply: func(*testing.T) []byte { return transfer },
			problem: true},
		{name: "an encrypted reply is refused in plain mode", reply: func(t *testing.T) []byte { return seal(t, transfer) },
			problem: true},
		{name: "an encrypted reply with a wrong signature is refused", mode: wechat.ModeSafe, reply: func(t *testing.T) []byte {
			return bytes.Replace(seal(t, transfer), []byte("<MsgSignature><![CDATA["), []byte("<MsgSignature><![CDATA[0"), 1)
		}, problem: true},
		{name: "free text is not a valid answer", reply: func(*testing.T) []byte { return []byte("ok") }, problem: true},
		{name: "a reply to another customer is not valid", reply: func(*testing.T) []byte {
			return passiveReply("o2", "transfer_customer_service", "")
		}, replyType: "transfer_customer_service", problem: true},
		{name: "transfer replies are ignored when configured", ignore: true, reply: func(*testing.T) []byte { return transfer },
			replyType: "transfer_customer_service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, func(c *Config) {
				c.Mode, c.IgnoreTransferReplies, c.OriginalID = tt.mode, tt.ignore, "gh_10f6c3c3ac5a"
			})
			f.agent("alice@shop", 1)
			f.agent("bob@shop", 0)
			reply := tt.reply(t)
			newReceiver(t, f, func(int, *http.Request, []byte) (int, []byte) { return http.StatusOK, reply })

			d, err := f.srv.CustomerMessage(t.Context(), "o1", "人工客服")
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != DeliveryDelivered || d.Attempts != 1 {
				t.Fatalf("delivery = %+v; an answered callback is never retried", d)
			}
			if (d.ReplyError != "") != tt.problem {
				t.Fatalf("ReplyError = %q, want a problem: %v", d.ReplyError, tt.problem)
			}
			if d.ReplyMsgType != tt.replyType {
				t.Fatalf("ReplyMsgType = %q, want %q", d.ReplyMsgType, tt.replyType)
			}
			if tt.replyType != "" && !tt.problem && !strings.Contains(d.Reply, "<MsgType><![CDATA["+tt.replyType) {
				t.Fatalf("recorded reply %q is not the plaintext reply", d.Reply)
			}
			st := f.srv.Snapshot()
			if got := servedBy(st)["o1"]; got != tt.servedBy {
				t.Fatalf("o1 served by %q, want %q", got, tt.servedBy)
			}
			if waiting := len(st.Waiting) == 1 && st.Waiting[0].KfAccount == "bob@shop"; waiting != tt.waiting {
				t.Fatalf("waiting = %+v", st.Waiting)
			}
		})
	}
}

func TestCallbackOrderAndConcurrency(t *testing.T) {
	t.Run("one customer's callbacks arrive in the order of the events", func(t *testing.T) {
		f := newFake(t, nil)
		rc := newReceiver(t, f, nil)
		f.agent("alice@shop", 1)
		f.agent("bob@shop", 0)
		f.transfer("o1", "")
		if err := f.srv.SwitchSession("o1", "bob@shop"); err != nil {
			t.Fatal(err)
		}
		if err := f.srv.CloseSession("o1"); err != nil {
			t.Fatal(err)
		}
		f.waitCallbacks()
		var got []string
		for _, r := range rc.requests() {
			doc, _ := open(t, r)
			got = append(got, doc.Event)
		}
		want := []string{"kf_create_session", "kf_switch_session", "kf_close_session"}
		if !slices.Equal(got, want) {
			t.Fatalf("events = %v, want %v", got, want)
		}
	})
	t.Run("a slow answer for one customer does not hold up another", func(t *testing.T) {
		f := newFake(t, nil)
		release := make(chan struct{})
		newReceiver(t, f, func(_ int, r *http.Request, _ []byte) (int, []byte) {
			if r.URL.Query().Get("openid") == "slow" {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
			return http.StatusOK, nil
		})
		done := make(chan error, 1)
		go func() {
			_, err := f.srv.CustomerMessage(t.Context(), "slow", "first")
			done <- err
		}()
		d, err := f.srv.CustomerMessage(t.Context(), "fast", "second")
		if err != nil || d.Status != DeliveryDelivered {
			t.Fatalf("fast customer: %+v, %v", d, err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the receiver may call the fake while it handles a callback", func(t *testing.T) {
		f := newFake(t, nil)
		var seen State
		newReceiver(t, f, func(int, *http.Request, []byte) (int, []byte) {
			seen = f.srv.Snapshot() // would deadlock if the state lock were held while posting
			return http.StatusOK, nil
		})
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		f.waitCallbacks()
		if servedBy(seen)["o1"] != "alice@shop" {
			t.Fatalf("state seen by the receiver: %+v", seen)
		}
	})
}

func TestCustomerMessagesAndEvents(t *testing.T) {
	f := newFake(t, func(c *Config) { c.OriginalID = "gh_10f6c3c3ac5a" })
	rc := newReceiver(t, f, nil)
	if _, err := f.srv.CustomerMessage(t.Context(), "o1", "你好"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.CustomerMessage(t.Context(), "o1", "在吗"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.SendEvent(t.Context(), "o1", "CLICK", map[string]string{"EventKey": "HUMAN"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.SendCustomerMessage(t.Context(), "o1", "text", map[string]string{"MsgType": "x"}); err == nil {
		t.Fatal("a field the fake sets itself was accepted")
	}
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d callbacks, want 3", len(reqs))
	}
	first, _ := open(t, reqs[0])
	second, _ := open(t, reqs[1])
	click, _ := open(t, reqs[2])
	if first.MsgType != "text" || first.Content != "你好" || first.FromUserName != "o1" || first.MsgId == 0 {
		t.Fatalf("text callback = %+v", first)
	}
	if second.MsgId == first.MsgId {
		t.Fatal("two messages share a MsgId")
	}
	if click.MsgType != "event" || click.Event != "CLICK" || click.EventKey != "HUMAN" || click.MsgId != 0 {
		t.Fatalf("click callback = %+v", click)
	}
	if !strings.Contains(f.srv.Deliveries()[0].Body, "<CreateTime>"+strconv.FormatInt(testStart.Unix(), 10)+"</CreateTime>") {
		t.Fatal("CreateTime is not a bare number")
	}
}

func TestDropNextCallback(t *testing.T) {
	f := newFake(t, nil)
	rc := newReceiver(t, f, nil)
	f.agent("alice@shop", 2)
	f.srv.DropNextCallback("kf_close_session")
	f.transfer("o1", "")
	f.transfer("o2", "")
	if err := f.srv.CloseSession("o1"); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.CloseSession("o2"); err != nil {
		t.Fatal(err)
	}
	f.waitCallbacks()
	var got []string
	for _, r := range rc.requests() {
		doc, _ := open(t, r)
		got = append(got, doc.Event+" "+doc.FromUserName)
	}
	slices.Sort(got)
	want := []string{"kf_close_session o2", "kf_create_session o1", "kf_create_session o2"}
	if !slices.Equal(got, want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	var dropped []string
	for _, d := range f.srv.Deliveries() {
		if d.Status == DeliveryDropped {
			dropped = append(dropped, d.Event+" "+d.OpenID)
		}
	}
	if !slices.Equal(dropped, []string{"kf_close_session o1"}) {
		t.Fatalf("dropped %v", dropped)
	}
}
