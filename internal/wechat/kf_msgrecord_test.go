package wechat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// getmsglist against the fake: what agents send (custom/send as the agent,
// or typed in the client) and what customers say in a session is recorded
// and read back page by page.
func TestGetMsgListReadsTheSessionsRecord(t *testing.T) {
	fake, base := newFake(t)
	c := fakeClient(t, base, nil)
	ctx := context.Background()
	start := time.Now().Add(-time.Minute)
	if err := fake.AddAgent("kf2001@account", "小王"); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetAgentStatus("kf2001@account", wechattest.StatusPC); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.CustomerMessage(ctx, "o-1", "排队前的消息"); err != nil { // before the session: no record
		t.Fatal(err)
	}
	if err := c.CreateSession(ctx, "kf2001@account", "o-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.CustomerMessage(ctx, "o-1", "我的订单没到"); err != nil {
		t.Fatal(err)
	}
	if err := c.SendText(ctx, "o-1", "我查一下", "kf2001@account"); err != nil {
		t.Fatal(err)
	}
	if err := c.SendText(ctx, "o-1", "系统消息", ""); err != nil { // not as an agent: no record
		t.Fatal(err)
	}
	if err := fake.AgentMessage("o-1", "已经发出了"); err != nil {
		t.Fatal(err)
	}
	if err := fake.AgentMessage("o-2", "nobody serves o-2"); err == nil {
		t.Error("AgentMessage for a customer nobody serves succeeded")
	}

	var got []wechat.MsgRecord
	next, pages := int64(1), 0
	for {
		page, err := c.GetMsgList(ctx, start, time.Now().Add(time.Minute), next, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, page.Records...)
		next = page.Next
		if len(page.Records) < 2 {
			break
		}
	}
	want := []struct {
		code int
		text string
	}{
		{wechat.OperCodeAgentReceived, "我的订单没到"},
		{wechat.OperCodeAgentSent, "我查一下"},
		{wechat.OperCodeAgentSent, "已经发出了"},
	}
	if len(got) != len(want) || pages != 2 {
		t.Fatalf("%d records in %d pages, want %d in 2: %+v", len(got), pages, len(want), got)
	}
	for i, w := range want {
		r := got[i]
		if r.OperCode != w.code || r.Text != w.text || r.OpenID != "o-1" || r.Worker != "kf2001@account" || r.Time < start.Unix() {
			t.Errorf("record %d = %+v, want opercode %d %q by kf2001@account", i, r, w.code, w.text)
		}
	}

	// A window before the messages holds none of them.
	page, err := c.GetMsgList(ctx, start.Add(-2*time.Hour), start.Add(-time.Hour), 1, 100)
	if err != nil || len(page.Records) != 0 {
		t.Errorf("an earlier window: %+v, %v; want no records", page, err)
	}
}

func TestGetMsgListRefusesWhatWeChatRefuses(t *testing.T) {
	_, base := newFake(t)
	c := fakeClient(t, base, nil)
	ctx := context.Background()
	now := time.Now()
	tests := []struct {
		name          string
		start, end    time.Time
		msgID         int64
		number        int
		wantInvalid   bool
		wantPermanent bool
	}{
		{"more than 24 hours", now.Add(-25 * time.Hour), now, 1, 10, true, true},
		{"more than 10000 records", now.Add(-time.Hour), now, 1, 10001, true, true},
		{"end before start", now, now.Add(-time.Hour), 1, 10, true, true},
		{"msgid 0", now.Add(-time.Hour), now, 0, 10, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.GetMsgList(ctx, tt.start, tt.end, tt.msgID, tt.number)
			if errors.Is(err, wechat.ErrInvalidRequest) != tt.wantInvalid || wechat.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("GetMsgList = %v; want invalid %v, permanent %v", err, tt.wantInvalid, tt.wantPermanent)
			}
		})
	}
}
