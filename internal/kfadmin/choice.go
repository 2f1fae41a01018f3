package kfadmin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// The customers' choice of agent (用户想要选择客服进行咨询 in WeChat's 多客服
// API documentation). A
// customer who sends one of the choice keywords gets, as ingest's passive
// text reply, a numbered menu: the online agents (nickname, 工号 kf_id and
// load), or — when groups with members exist — the groups with how many of
// their members are online. Their next message, if it is a number, is
// answered with the passive transfer_customer_service reply naming that
// agent (or the group's least-loaded online member, as keyword routing
// picks) in TransInfo/KfAccount; 0 means any agent. An agent who went
// offline, or serves as many customers as they accept, is explained in a
// text reply with the current menu, and the customer may choose again.
// Every answered number is an AgentChosen event.
//
// Why passive replies: the menu answers the customer's own message, within
// WeChat's 5-second window, with no API call on the callback path and no
// dependence on the 48-hour custom-message window; ingest sends it only
// after the customer's message is acknowledged by JetStream. The menu is
// built from the Router's last poll, never from a call made on the
// callback path.
//
// The menu a customer was shown waits in the kefu_kf_choice bucket (one key
// per customer, a hash of the openid; at most MaxChoiceOptions entries),
// so a number reaching another replica is understood the same way; the
// bucket's TTL (ChoiceTTL) forgets unanswered menus. WeChat's retry of a
// callback gets the reply the first attempt computed.

// MaxChoiceOptions bounds the menu.
const MaxChoiceOptions = 20

// ChoiceTTL is how long a menu waits for the customer's number.
const ChoiceTTL = bus.ChoiceTTL

// ChoicePublisher publishes the AgentChosen events; *bus.Bus is one.
type ChoicePublisher interface {
	Publish(ctx context.Context, ev events.Event, env bus.Envelope) (bus.Published, error)
}

// ChoiceConfig turns on the customers' choice of agent.
type ChoiceConfig struct {
	// Keywords are the messages that ask for the menu, compared with the
	// whole message (trimmed, case-insensitively). None: the choice is off.
	Keywords []string
	// Store is the kefu_kf_choice bucket. Required with Keywords.
	Store jetstream.KeyValue
	// Publisher publishes AgentChosen. Required with Keywords.
	Publisher ChoicePublisher
	// AppID is the official account's appid, for the events.
	AppID string
}

func (c ChoiceConfig) on() bool { return len(c.Keywords) > 0 }

func (c ChoiceConfig) validate() error {
	if !c.on() {
		return nil
	}
	switch {
	case c.Store == nil:
		return errors.New("kf router: Choice.Store (the kefu_kf_choice bucket) is required with choice keywords")
	case c.Publisher == nil:
		return errors.New("kf router: Choice.Publisher is required with choice keywords")
	}
	return nil
}

// pendingChoice is a menu a customer was shown, as stored.
type pendingChoice struct {
	Kind    string   `json:"kind"` // "agent" or "group"
	Options []string `json:"options"`
	At      int64    `json:"at"` // Unix seconds
	// The last number answered, and the reply, so that WeChat's retry of
	// that callback gets the same one.
	LastMsg  string `json:"last_msg,omitempty"`
	LastText string `json:"last_text,omitempty"`
	LastKf   string `json:"last_kf,omitempty"`
	// Done: the customer was transferred; later numbers are ordinary
	// messages.
	Done bool `json:"done,omitempty"`
}

// choiceKey is the customer's key in the bucket: the openid is a
// stranger's string as far as a KV key goes, so it is hashed.
func choiceKey(openid string) string {
	sum := sha256.Sum256([]byte(openid))
	return "c" + hex.EncodeToString(sum[:20])
}

// parseChoice reads a number of 1–3 digits, ASCII or full-width.
func parseChoice(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			n = n*10 + int(r-'0')
		case r >= '０' && r <= '９':
			n = n*10 + int(r-'０')
		default:
			return 0, false
		}
		digits++
	}
	return n, digits <= 3
}

func (r *Router) isChoiceKeyword(content string) bool {
	text := strings.TrimSpace(content)
	for _, k := range r.cfg.Choice.Keywords {
		if strings.EqualFold(text, k) {
			return true
		}
	}
	return false
}

// Choose answers a customer's message when it asks for the menu of
// agents or answers it: a text (the menu, or why the chosen agent cannot
// take them), or the agent to transfer them to ("" for any). handled is
// false for every other message, which ingest routes as usual. It calls
// NATS (the pending menu, the event) but never WeChat.
func (r *Router) Choose(ctx context.Context, cb *wechat.Callback) (text, kfAccount string, handled bool) {
	if !r.cfg.Choice.on() || cb.MsgType != "text" {
		return "", "", false
	}
	n, isNumber := parseChoice(cb.Content)
	switch {
	case r.isChoiceKeyword(cb.Content):
		menu, pending, ok := r.menu()
		if !ok {
			return "", "", false // nobody to choose from: any agent
		}
		if err := r.savePending(ctx, cb.FromUserName, pending); err != nil {
			r.log.Warn("kf choice: store the menu; the customer goes to any agent", zap.Error(err))
			return "", "", false
		}
		return menu, "", true
	case isNumber:
		return r.answer(ctx, cb, n)
	}
	return "", "", false
}

// answer settles a number against the customer's pending menu.
func (r *Router) answer(ctx context.Context, cb *wechat.Callback, n int) (string, string, bool) {
	key := choiceKey(cb.FromUserName)
	entry, err := r.cfg.Choice.Store.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			r.log.Warn("kf choice: read the pending menu; the number is routed as a message", zap.Error(err))
		}
		return "", "", false
	}
	var p pendingChoice
	if err := json.Unmarshal(entry.Value(), &p); err != nil {
		return "", "", false
	}
	msg := choiceMsgID(cb)
	if p.LastMsg == msg { // WeChat retrying the callback
		return p.LastText, p.LastKf, true
	}
	if p.Done || r.cfg.Now().Sub(time.Unix(p.At, 0)) > ChoiceTTL {
		return "", "", false
	}
	ev := events.AgentChosen{OpenID: cb.FromUserName, Choice: n}
	text, kf := r.settle(&p, n, &ev)
	if ev.Outcome != "" {
		r.publishChoice(ctx, cb, msg, ev)
	}
	p.LastMsg, p.LastText, p.LastKf = msg, text, kf
	p.Done = text == ""
	if b, err := json.Marshal(p); err == nil {
		if _, err := r.cfg.Choice.Store.Put(ctx, key, b); err != nil {
			r.log.Warn("kf choice: store the answer", zap.Error(err))
		}
	}
	return text, kf, true
}

// settle decides what number n of menu p means now: a transfer (text "")
// or an explanation with a fresh menu, which replaces p's options.
func (r *Router) settle(p *pendingChoice, n int, ev *events.AgentChosen) (text, kf string) {
	now := r.cfg.Now()
	table := r.table.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := r.agents
	if n == 0 || snap == nil || now.Sub(snap.at) > r.cfg.MaxAge {
		// Any agent; also when kefu cannot tell who is online now.
		ev.Kind, ev.Outcome = events.ChosenKindAny, events.ChoiceAny
		return "", ""
	}
	if n > len(p.Options) {
		menu, fresh, ok := r.menuLocked(table, snap)
		if !ok {
			ev.Kind, ev.Outcome = events.ChosenKindAny, events.ChoiceAny
			return "", ""
		}
		*p = fresh
		return fmt.Sprintf("没有编号 %d。", n) + menu, ""
	}
	online := r.loadedLocked(snap)
	option := p.Options[n-1]
	var why string
	if p.Kind == events.ChosenKindGroup {
		ev.Kind, ev.Group = events.ChosenKindGroup, option
		grp, ok := table.groups[option]
		var pick wechat.OnlineKf
		var err error = ErrNobodyOnline
		if ok {
			pick, err = PickAgent(online, grp.Members, func(kf string) int { return snap.queued[strings.ToLower(kf)] })
		}
		if err == nil {
			ev.KfAccount, ev.KfID, ev.Outcome = pick.KfAccount, pick.KfID, events.ChoiceTransferred
			r.countLocked(ev.OpenID, pick.KfAccount, option, now)
			return "", pick.KfAccount
		}
		ev.Outcome = events.ChoiceNobodyOnline
		why = fmt.Sprintf("客服组「%s」目前没有客服在线。", option)
	} else {
		ev.Kind, ev.KfAccount = events.ChosenKindAgent, option
		i := slices.IndexFunc(online, func(k wechat.OnlineKf) bool { return strings.EqualFold(k.KfAccount, option) && k.Status != 0 })
		name := r.displayNameLocked(snap, option)
		switch {
		case i < 0:
			ev.Outcome = events.ChoiceOffline
			why = fmt.Sprintf("客服 %s 目前不在线。", name)
		case full(online[i]):
			ev.KfID, ev.Outcome = online[i].KfID, events.ChoiceFull
			why = fmt.Sprintf("客服 %s 正在接待 %d 位客户，已满。", name, online[i].AcceptedCase)
		default:
			ev.KfID, ev.Outcome = online[i].KfID, events.ChoiceTransferred
			r.countLocked(ev.OpenID, online[i].KfAccount, "", now)
			return "", online[i].KfAccount
		}
	}
	menu, fresh, ok := r.menuLocked(table, snap)
	if !ok {
		return why + "请稍后再试，或直接留言，将由任意客服接待。", ""
	}
	*p = fresh
	return why + menu, ""
}

// full reports whether an agent serves as many customers as they accept
// automatically (an auto_accept of 0 counts as 1, as in PickAgent).
func full(k wechat.OnlineKf) bool { return k.AcceptedCase >= max(k.AutoAccept, 1) }

// loadedLocked is the online list with the customers routed since the
// poll counted in; r.mu is held.
func (r *Router) loadedLocked(snap *agentSnapshot) []wechat.OnlineKf {
	online := slices.Clone(snap.online)
	for i := range online {
		online[i].AcceptedCase += r.extra[strings.ToLower(online[i].KfAccount)]
	}
	return online
}

// countLocked records a routing decision until the next poll shows it;
// r.mu is held.
func (r *Router) countLocked(openid, kf, group string, now time.Time) {
	if prev, seen := r.routed[openid]; seen {
		r.uncount(prev.kf)
	}
	r.routed[openid] = routedCustomer{kf: kf, group: group, at: now}
	r.extra[strings.ToLower(kf)]++
}

func (r *Router) displayNameLocked(snap *agentSnapshot, account string) string {
	info, ok := snap.accounts[strings.ToLower(account)]
	nick := info.KfNick
	if !ok || nick == "" {
		nick, _, _ = strings.Cut(account, "@")
	}
	if ok && info.KfID != "" {
		return fmt.Sprintf("%s（工号 %s）", nick, info.KfID)
	}
	return nick
}

// menu builds the menu from the last poll; ok is false when there is
// nothing to choose from or no recent poll.
func (r *Router) menu() (string, pendingChoice, bool) {
	table := r.table.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := r.agents
	if snap == nil || r.cfg.Now().Sub(snap.at) > r.cfg.MaxAge {
		return "", pendingChoice{}, false
	}
	return r.menuLocked(table, snap)
}

func (r *Router) menuLocked(table *routingTable, snap *agentSnapshot) (string, pendingChoice, bool) {
	online := r.loadedLocked(snap)
	p := pendingChoice{At: r.cfg.Now().Unix()}
	var b strings.Builder
	var names []string
	for name, g := range table.groups {
		if len(g.Members) > 0 {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		p.Kind = events.ChosenKindGroup
		b.WriteString("请回复编号选择客服组：\n")
		for _, name := range names[:min(len(names), MaxChoiceOptions)] {
			n := 0
			for _, k := range online {
				if k.Status != 0 && slices.ContainsFunc(table.groups[name].Members, func(m string) bool { return strings.EqualFold(m, k.KfAccount) }) {
					n++
				}
			}
			p.Options = append(p.Options, name)
			if n > 0 {
				fmt.Fprintf(&b, "%d. %s（%d 位客服在线）\n", len(p.Options), name, n)
			} else {
				fmt.Fprintf(&b, "%d. %s（暂无客服在线）\n", len(p.Options), name)
			}
		}
	} else {
		p.Kind = events.ChosenKindAgent
		agents := slices.DeleteFunc(online, func(k wechat.OnlineKf) bool { return k.Status == 0 })
		if len(agents) == 0 {
			return "", pendingChoice{}, false
		}
		slices.SortFunc(agents, func(a, b wechat.OnlineKf) int {
			if lessLoaded(a, 0, b, 0) {
				return -1
			}
			return 1
		})
		b.WriteString("请回复编号选择客服：\n")
		for _, k := range agents[:min(len(agents), MaxChoiceOptions)] {
			p.Options = append(p.Options, k.KfAccount)
			state := fmt.Sprintf("接待中 %d/%d", k.AcceptedCase, k.AutoAccept)
			if full(k) {
				state = fmt.Sprintf("已满 %d/%d", k.AcceptedCase, k.AutoAccept)
			}
			fmt.Fprintf(&b, "%d. %s %s\n", len(p.Options), r.displayNameLocked(snap, k.KfAccount), state)
		}
	}
	fmt.Fprintf(&b, "回复 0 由任意客服接待。（%d 分钟内有效）", int(ChoiceTTL/time.Minute))
	return b.String(), p, true
}

func (r *Router) savePending(ctx context.Context, openid string, p pendingChoice) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = r.cfg.Choice.Store.Put(ctx, choiceKey(openid), b)
	return err
}

// choiceMsgID identifies the customer's message: its MsgId, else the
// sender and CreateTime.
func choiceMsgID(cb *wechat.Callback) string {
	if cb.MsgID != 0 {
		return strconv.FormatUint(cb.MsgID, 10)
	}
	return cb.FromUserName + "-" + strconv.FormatInt(cb.CreateTime, 10)
}

// publishChoice publishes the AgentChosen; a failure is logged, and the
// customer still gets their answer.
func (r *Router) publishChoice(ctx context.Context, cb *wechat.Callback, msg string, ev events.AgentChosen) {
	now := r.cfg.Now()
	ev.Meta = events.Meta{AppID: r.cfg.Choice.AppID, OccurredAt: time.Unix(cb.CreateTime, 0).UTC(), ReceivedAt: now.UTC()}
	id := "kf-chosen-" + msg
	if len(id) > events.MaxIDLength {
		sum := sha256.Sum256([]byte(msg))
		id = "kf-chosen-sha256-" + hex.EncodeToString(sum[:])
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := r.cfg.Choice.Publisher.Publish(pctx, ev, bus.Envelope{ID: id, Source: "kefu/ingest/" + r.cfg.Choice.AppID, Time: now}); err != nil {
		r.log.Warn("kf choice: publish "+events.SubjectAgentChosen+"; the customer still gets their answer", zap.Error(err), zap.String("outcome", ev.Outcome))
	}
}
