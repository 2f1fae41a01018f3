package ingest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// A message answered with transfer_customer_service is followed on the
// bus by kefu.wechat.kf.queue.joined, with the message's time as the join
// time; WeChat's retry publishes neither again, and a callback that is not
// transferred (an event) publishes no join.
func TestTransferPublishesQueueJoined(t *testing.T) {
	h := newHarness(t, setup{transfer: true})
	text := `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oJoiner]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content><MsgId>6054768590064713799</MsgId></xml>`
	q, body := h.sign(wechat.ModeSafe, []byte(text))
	if resp := h.postRaw(q, body); resp.StatusCode != 200 {
		t.Fatalf("answer %d %q", resp.StatusCode, readBody(t, resp))
	}
	if n := h.count(); n != 2 {
		t.Fatalf("%d events stored, want the message and its join", n)
	}
	m := h.last()
	if m.Subject != events.SubjectQueueJoined {
		t.Fatalf("last subject %q, want %q", m.Subject, events.SubjectQueueJoined)
	}
	if id := m.Header.Get("Nats-Msg-Id"); id != "kf-joined-6054768590064713799" {
		t.Fatalf("join id %q", id)
	}
	ev, err := events.Decode[events.QueueJoined](m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.OpenID != "oJoiner" || !ev.OccurredAt.Equal(time.Unix(1409735668, 0)) || ev.MsgID != "6054768590064713799" || ev.AppID != appID {
		t.Fatalf("join %+v", ev)
	}
	// WeChat's retry of the same callback.
	q, body = h.sign(wechat.ModeSafe, []byte(text))
	if resp := h.postRaw(q, body); resp.StatusCode != 200 || !strings.Contains(readBody(t, resp), "Encrypt") {
		t.Fatalf("retry answer %d", resp.StatusCode)
	}
	if n := h.count(); n != 2 {
		t.Fatalf("%d events stored after a retry, want 2", n)
	}
	// An event is never transferred: no join.
	if body := readBody(t, h.post(wechat.ModeSafe, []byte(kfSwitch))); body != "success" {
		t.Fatalf("event reply %q", body)
	}
	if m := h.last(); m.Subject == events.SubjectQueueJoined || h.count() != 3 {
		t.Fatalf("an event published a join (%d stored, last %s)", h.count(), m.Subject)
	}
}
