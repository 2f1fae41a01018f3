package kfadmin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// choiceEnv is the fake WeChat, NATS, and two ingest replicas with their
// own Routers, sharing the groups and the pending menus as replicas do.
type choiceEnv struct {
	*env
	groups  *kfadmin.Groups
	routers [2]*kfadmin.Router
	urls    [2]string
	chosen  *nats.Subscription
	clock   *testClock // the Routers'
}

func newChoiceEnv(t *testing.T) *choiceEnv {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, false)
	b, srv := bustest.Open(t, bustest.Streams(events.StreamWeChat, events.StreamKF))
	gkv, err := b.KeyValue(ctx, bus.BucketGroups)
	if err != nil {
		t.Fatal(err)
	}
	ckv, err := b.KeyValue(ctx, bus.BucketChoice)
	if err != nil {
		t.Fatal(err)
	}
	nc, _ := natstest.Connect(t, srv)
	sub, err := nc.SubscribeSync(events.SubjectAgentChosen)
	if err != nil {
		t.Fatal(err)
	}
	c := &choiceEnv{env: e, groups: kfadmin.NewGroups(gkv), chosen: sub, clock: newTestClock()}
	for i := range c.routers {
		r, err := kfadmin.NewRouter(kfadmin.RouterConfig{Groups: c.groups, Agents: e.client, RefreshInterval: time.Hour, Now: c.clock.Now,
			Choice: kfadmin.ChoiceConfig{Keywords: []string{"选择客服", "人工"}, Store: ckv, Publisher: b, AppID: testAppID}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop(context.Background()) })
		svc, err := ingest.New(ingest.Config{AppID: testAppID, Token: testToken, Transfer: true},
			ingest.Deps{Publisher: b, Router: r, Chooser: r, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		svc.Routes(mux)
		hs := httptest.NewServer(mux)
		t.Cleanup(hs.Close)
		c.routers[i], c.urls[i] = r, hs.URL+"/wechat/callback"
	}
	c.refresh()
	return c
}

// refresh makes both replicas poll WeChat now.
func (c *choiceEnv) refresh() {
	c.t.Helper()
	for _, r := range c.routers {
		if err := r.Refresh(context.Background()); err != nil {
			c.t.Fatal(err)
		}
	}
}

// say sends a customer's text through replica i and returns the delivery.
func (c *choiceEnv) say(i int, openid, text string, fields ...string) wechattest.Delivery {
	c.t.Helper()
	c.fake.SetCallbackURL(c.urls[i])
	f := map[string]string{"Content": text}
	for j := 0; j+1 < len(fields); j += 2 {
		f[fields[j]] = fields[j+1]
	}
	d, err := c.fake.SendCustomerMessage(context.Background(), openid, "text", f)
	if err != nil || d.ReplyError != "" {
		c.t.Fatalf("%s says %q: %v %s", openid, text, err, d.ReplyError)
	}
	return d
}

// wantText checks that the reply is a passive text holding every part.
func wantText(t *testing.T, what string, d wechattest.Delivery, parts ...string) {
	t.Helper()
	if d.ReplyMsgType != "text" {
		t.Fatalf("%s: reply type %q (%s); want a text", what, d.ReplyMsgType, d.Reply)
	}
	for _, p := range parts {
		if !strings.Contains(d.Reply, p) {
			t.Errorf("%s: reply lacks %q:\n%s", what, p, d.Reply)
		}
	}
}

func wantTransfer(t *testing.T, what string, d wechattest.Delivery, kf string) {
	t.Helper()
	if d.ReplyMsgType != "transfer_customer_service" || d.ReplyKfAccount != kf {
		t.Fatalf("%s: reply type %q TransInfo/KfAccount %q (%s); want a transfer to %q", what, d.ReplyMsgType, d.ReplyKfAccount, d.Reply, kf)
	}
}

// nextChosen returns the next AgentChosen published.
func (c *choiceEnv) nextChosen() events.AgentChosen {
	c.t.Helper()
	m, err := c.chosen.NextMsg(5 * time.Second)
	if err != nil {
		c.t.Fatalf("no %s event: %v", events.SubjectAgentChosen, err)
	}
	var ev events.AgentChosen
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		c.t.Fatal(err)
	}
	if id := m.Header.Get(events.HeaderMsgID); !strings.HasPrefix(id, "kf-chosen-") || m.Header.Get(events.HeaderType) != "kefu.kf.agent.chosen.v1" {
		c.t.Errorf("event headers %v", m.Header)
	}
	return ev
}

func (c *choiceEnv) noMoreChosen() {
	c.t.Helper()
	if m, err := c.chosen.NextMsg(200 * time.Millisecond); err == nil {
		c.t.Errorf("unexpected event %s", m.Data)
	}
}

func (c *choiceEnv) waiting(openid string) bool {
	for _, w := range c.fake.Snapshot().Waiting {
		if w.OpenID == openid {
			return true
		}
	}
	return false
}

// The menu, a number answered on another replica, the transfer with
// TransInfo, the event; an agent gone offline or full is explained and the
// customer chooses again.
func TestCustomerChoosesAnAgent(t *testing.T) {
	ctx := context.Background()
	c := newChoiceEnv(t)
	c.agent("alice@test", wechattest.StatusPC, 3)
	c.agent("bob@test", wechattest.StatusPC, 2)
	c.agent("carol@test", wechattest.StatusOffline, 2)
	c.serve("alice@test", "o1")
	c.refresh()

	d := c.say(0, "oPick", "选择客服")
	wantText(t, "menu", d, "请回复编号选择客服", "1. bob（工号 1002） 接待中 0/2", "2. alice（工号 1001） 接待中 1/3", "回复 0 由任意客服接待")
	if strings.Contains(d.Reply, "carol") {
		t.Errorf("the menu lists carol, who is offline:\n%s", d.Reply)
	}
	if c.waiting("oPick") {
		t.Error("asking for the menu put the customer in the queue")
	}
	c.noMoreChosen()

	// The number reaches the other replica: the menu is shared.
	d = c.say(1, "oPick", "２", "MsgId", "777001") // full-width digits count
	wantTransfer(t, "number 2", d, "alice@test")
	if s, err := c.client.GetSession(ctx, "oPick"); err != nil || s.KfAccount != "alice@test" {
		t.Fatalf("WeChat gave oPick to %q (%v); want alice, the agent chosen", s.KfAccount, err)
	}
	ev := c.nextChosen()
	if ev.OpenID != "oPick" || ev.Choice != 2 || ev.Kind != events.ChosenKindAgent || ev.KfAccount != "alice@test" ||
		ev.KfID != "1001" || ev.Outcome != events.ChoiceTransferred || ev.AppID != testAppID {
		t.Errorf("event %+v", ev)
	}
	// WeChat retrying that callback gets the same answer, and the event
	// is not published twice.
	wantTransfer(t, "retried number", c.say(0, "oPick", "２", "MsgId", "777001"), "alice@test")
	c.noMoreChosen()
	// Once transferred, a number is an ordinary message again.
	wantTransfer(t, "a later number", c.say(0, "oPick", "1"), "")

	// A number with no menu is an ordinary message: any agent.
	wantTransfer(t, "number without a menu", c.say(0, "oNum", "1"), "")
	c.noMoreChosen()

	c.refresh() // WeChat now counts oPick in alice's sessions
	// bob goes offline after showing in the menu: explained, and the
	// customer gets the current menu and stays out of the queue.
	wantText(t, "second menu", c.say(0, "oOff", "人工"), "1. bob（工号 1002）", "2. alice（工号 1001） 接待中 2/3")
	if err := c.fake.SetAgentStatus("bob@test", wechattest.StatusOffline); err != nil {
		t.Fatal(err)
	}
	c.refresh()
	d = c.say(1, "oOff", "1")
	wantText(t, "offline agent", d, "客服 bob（工号 1002） 目前不在线", "1. alice（工号 1001） 接待中 2/3")
	if strings.Contains(d.Reply, "bob（工号 1002） 接待中") || c.waiting("oOff") {
		t.Errorf("after the explanation: waiting %v, reply\n%s", c.waiting("oOff"), d.Reply)
	}
	if ev := c.nextChosen(); ev.Outcome != events.ChoiceOffline || ev.KfAccount != "bob@test" || ev.Choice != 1 {
		t.Errorf("offline event %+v", ev)
	}
	// A number beyond the menu is explained too, without an event.
	wantText(t, "no such number", c.say(0, "oOff", "9"), "没有编号 9", "1. alice")
	c.noMoreChosen()

	// alice is now full: explained the same way.
	if err := c.fake.SetAutoAccept("alice@test", 2); err != nil {
		t.Fatal(err)
	}
	c.refresh()
	d = c.say(0, "oOff", "1")
	wantText(t, "full agent", d, "客服 alice（工号 1001） 正在接待 2 位客户，已满", "1. alice（工号 1001） 已满 2/2")
	if ev := c.nextChosen(); ev.Outcome != events.ChoiceFull || ev.KfAccount != "alice@test" || ev.KfID != "1001" {
		t.Errorf("full event %+v", ev)
	}
	// 0: any agent.
	wantTransfer(t, "zero", c.say(1, "oOff", "0"), "")
	if ev := c.nextChosen(); ev.Outcome != events.ChoiceAny || ev.Kind != events.ChosenKindAny || ev.KfAccount != "" {
		t.Errorf("any event %+v", ev)
	}
	if !c.waiting("oOff") {
		t.Error("after 0 the customer is not in the queue")
	}
}

// With groups, the customer chooses a group and is transferred to its
// least-loaded online member; a group with nobody online is explained.
func TestCustomerChoosesAGroup(t *testing.T) {
	ctx := context.Background()
	c := newChoiceEnv(t)
	c.agent("alice@test", wechattest.StatusPC, 3)
	c.agent("bob@test", wechattest.StatusPC, 3)
	c.agent("carol@test", wechattest.StatusOffline, 3)
	c.serve("alice@test", "o1")
	for name, members := range map[string][]string{"billing": {"alice@test", "bob@test"}, "night": {"carol@test"}} {
		if _, err := c.groups.Create(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.groups.AddMembers(ctx, name, members...); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		for i := range c.routers {
			d := c.say(i, "oProbe"+strconv.Itoa(i), "选择客服")
			if !strings.Contains(d.Reply, "night") {
				return false
			}
		}
		return true
	}, "both replicas see the groups")
	c.refresh()

	wantText(t, "group menu", c.say(0, "oG", "选择客服"), "请回复编号选择客服组", "1. billing（2 位客服在线）", "2. night（暂无客服在线）")
	d := c.say(1, "oG", "2")
	wantText(t, "nobody online", d, "客服组「night」目前没有客服在线", "1. billing")
	if ev := c.nextChosen(); ev.Outcome != events.ChoiceNobodyOnline || ev.Kind != events.ChosenKindGroup || ev.Group != "night" || ev.KfAccount != "" {
		t.Errorf("nobody-online event %+v", ev)
	}
	wantTransfer(t, "group billing", c.say(0, "oG", "1"), "bob@test")
	if ev := c.nextChosen(); ev.Outcome != events.ChoiceTransferred || ev.Group != "billing" || ev.KfAccount != "bob@test" || ev.KfID != "1002" {
		t.Errorf("group event %+v", ev)
	}
	if s, err := c.client.GetSession(ctx, "oG"); err != nil || s.KfAccount != "bob@test" {
		t.Fatalf("WeChat gave oG to %q (%v); want bob, billing's least-loaded member", s.KfAccount, err)
	}

	// getkflist (nicknames) is not read at every poll, but at once when an
	// unknown agent comes online.
	lists := c.fake.CallCount(wechattest.MethodKFList)
	c.refresh()
	c.refresh()
	if n := c.fake.CallCount(wechattest.MethodKFList); n != lists {
		t.Errorf("two polls read getkflist %d times; want none within a minute", n-lists)
	}
	c.agent("dave@test", wechattest.StatusPC, 3)
	c.refresh()
	if n := c.fake.CallCount(wechattest.MethodKFList); n != lists+2 {
		t.Errorf("a new agent online made the two replicas read getkflist %d times; want 2", n-lists)
	}
}

// A menu left unanswered for ChoiceTTL is forgotten: the number is then an
// ordinary message, and no choice is published.
func TestUnansweredMenuExpires(t *testing.T) {
	c := newChoiceEnv(t)
	c.agent("alice@test", wechattest.StatusPC, 3)
	c.refresh()
	wantText(t, "menu", c.say(0, "oLate", "选择客服"), "1. alice（工号 1001）")
	c.clock.Advance(kfadmin.ChoiceTTL - time.Second)
	c.refresh()
	wantText(t, "just before expiry", c.say(1, "oLate", "5"), "没有编号 5", "1. alice")
	c.clock.Advance(kfadmin.ChoiceTTL + time.Second) // the menu shown just now expires too
	c.refresh()
	wantTransfer(t, "after expiry", c.say(0, "oLate", "1"), "")
	c.noMoreChosen()
}
