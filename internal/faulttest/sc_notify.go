package faulttest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/notifier"
)

// notifyRig is ingest and notifier on the suite's cluster with a fake
// WeChat of their own, and a generator of session callbacks.
type notifyRig struct {
	wx  *wechattest.Server
	api *httptest.Server
	gen *generator
	obs *observer
}

func (n *notifyRig) close() {
	if n.obs != nil {
		n.obs.close()
	}
	n.api.Close()
	n.wx.Close()
}

func (sc *scenario) notifyRig(ctx context.Context, tag string) (*notifyRig, error) {
	wx, api, err := fakeWeChat()
	if err != nil {
		return nil, err
	}
	n := &notifyRig{wx: wx, api: api}
	since := time.Now()
	ing, err := sc.startRole(ctx, roleOpts{name: "ingest", role: "ingest", wechat: api.URL})
	if err != nil {
		n.close()
		return nil, err
	}
	if _, err := sc.startRole(ctx, roleOpts{name: "notifier", role: "notifier", wechat: api.URL,
		env: map[string]string{"KEFU_NOTIFY_RATE_LIMIT": "off", "KEFU_RETRY_MAX_BACKOFF": "2s"}}); err != nil {
		n.close()
		return nil, err
	}
	prefix := runPrefix(tag)
	if n.obs, err = newObserver(sc.cluster.URLs(), "", wx, prefix, since); err != nil {
		n.close()
		return nil, err
	}
	// Session events of earlier scenarios that no notifier consumed are
	// sent first (to customers this fake does not know); the scenario
	// begins when they are done.
	if _, err := waitUntil(ctx, sc.cfg.CatchUp, 500*time.Millisecond, func() (bool, string) {
		return n.obs.idle(ctx, []consumerRef{{events.StreamWeChat, notifier.DurableSessions}})
	}); err != nil {
		n.close()
		return nil, err
	}
	if n.gen, err = newGenerator(ing.addr, wx, prefix); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// delivered waits until the notifier's consumer is idle, then compares
// the messages the fake carried out with the callbacks answered success:
// each must have been delivered exactly once.
func (sc *scenario) delivered(ctx context.Context, n *notifyRig) (Row, error) {
	if _, err := waitUntil(ctx, sc.cfg.CatchUp, time.Second, func() (bool, string) {
		return n.obs.idle(ctx, []consumerRef{{events.StreamWeChat, notifier.DurableSessions}})
	}); err != nil {
		return Row{}, err
	}
	_, cbs := n.gen.results()
	sent := n.obs.sentMessages()
	var row Row
	for _, cb := range cbs {
		if !cb.success {
			continue
		}
		kind := events.NotifySessionCreated
		if cb.event == eventClose {
			kind = events.NotifySessionClosed
		}
		row.Sent++
		switch got := sent[cb.openid][kind]; {
		case got == 0:
			row.Lost++
		default:
			row.Stored++
			if got > 1 {
				row.Doubled++
			}
		}
	}
	return row, nil
}

// notSent: before each session pair, the fake is told to fail the next
// sends (or token fetches) with one of the failures after which WeChat
// certainly did not carry the message out — HTTP 429 from the gateway,
// errcode -1, errcode 45011, a token fetch that times out. Every message
// must still reach the customer exactly once.
func (sc *scenario) notSent(ctx context.Context) Row {
	n, err := sc.notifyRig(ctx, "NS")
	if err != nil {
		return Row{Err: err}
	}
	defer n.close()
	k := sc.cfg.NotSentRepeat
	faults := []struct {
		name   string
		sends  int // custom/send calls it refuses
		inject func()
	}{
		{"HTTP 429", k, func() { n.wx.InjectFault(wechattest.MethodCustomSend, wechattest.FaultTooManyRequests, k) }},
		{"-1 system busy", k, func() { n.wx.InjectErrors(wechattest.MethodCustomSend, -1, k) }},
		{"45011 frequency limit", k, func() { n.wx.InjectErrors(wechattest.MethodCustomSend, 45011, k) }},
		{"token fetch timeout", 0, func() {
			n.wx.ExpireTokens()
			n.wx.InjectFault(wechattest.MethodStableToken, wechattest.FaultHangAfterHandling, 1)
		}},
	}
	// A first pair takes the token and opens the connections.
	n.gen.session(0)
	if _, err := waitUntil(ctx, sc.cfg.CatchUp, 500*time.Millisecond, func() (bool, string) {
		return n.obs.idle(ctx, []consumerRef{{events.StreamWeChat, notifier.DurableSessions}})
	}); err != nil {
		return Row{Err: err}
	}
	warm := sentCount(n.obs.sentMessages())
	refused, tokenCalls, sendCalls := 0, n.wx.CallCount(wechattest.MethodStableToken), n.wx.CallCount(wechattest.MethodCustomSend)
	var names []string
	for i, f := range faults {
		sc.logf("injecting %s", f.name)
		f.inject()
		refused += f.sends
		names = append(names, f.name)
		n.gen.session(i + 1)
		// The next fault is injected once this one was used up, so each
		// meets a message of its own.
		if _, err := waitUntil(ctx, sc.cfg.CatchUp, 500*time.Millisecond, func() (bool, string) {
			return n.obs.idle(ctx, []consumerRef{{events.StreamWeChat, notifier.DurableSessions}})
		}); err != nil {
			return Row{Err: fmt.Errorf("after %s: %w", f.name, err)}
		}
	}
	row, err := sc.delivered(ctx, n)
	if err != nil {
		return Row{Err: err}
	}
	// After the warm-up: every call beyond one per message delivered was
	// refused, and every injected refusal must have met a send.
	calls := n.wx.CallCount(wechattest.MethodCustomSend) - sendCalls
	delivered := sentCount(n.obs.sentMessages()) - warm
	tokenFetches := n.wx.CallCount(wechattest.MethodStableToken) - tokenCalls
	row.Detail = fmt.Sprintf("%s; custom/send calls %d for %d messages (%d refused by injection); token fetches after expiry %d",
		strings.Join(names, ", "), calls, delivered, refused, tokenFetches)
	if calls-delivered < refused || tokenFetches == 0 {
		row.Err = fmt.Errorf("the injected failures did not all reach the notifier: %d calls for %d messages, %d token fetches", calls, delivered, tokenFetches)
	}
	return row
}

// tokenRace: while session pairs flow, another system sharing the appid
// forces a new access token TokenRevocations times (WeChat allows one a
// 30 s), so kefu's token is answered 40001. Every message must reach the
// customer exactly once, and kefu must not force a refresh itself.
func (sc *scenario) tokenRace(ctx context.Context) Row {
	n, err := sc.notifyRig(ctx, "TK")
	if err != nil {
		return Row{Err: err}
	}
	defer n.close()
	loadCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { n.gen.run(loadCtx, 10); close(done) }()
	revoked, fetches := 0, 0
	var refusals []string
	for i := range sc.cfg.TokenRevocations {
		wait := 3 * time.Second
		if i > 0 {
			wait = 31 * time.Second // one forced refresh per 30 s
		}
		if err := sleep(ctx, wait); err != nil {
			stop()
			return Row{Err: err}
		}
		before := n.wx.CallCount(wechattest.MethodStableToken)
		if _, err := n.wx.ForceRefreshByOtherSystem(); err != nil {
			refusals = append(refusals, err.Error())
			continue
		}
		revoked++
		sc.logf("another system forced a new token (%d)", revoked)
		// kefu meets 40001 at its next call and fetches the new token.
		waitUntil(ctx, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
			return n.wx.CallCount(wechattest.MethodStableToken) > before, "kefu has not fetched the new token"
		})
		if n.wx.CallCount(wechattest.MethodStableToken) > before {
			fetches++
		}
	}
	sleep(ctx, 3*time.Second)
	stop()
	<-done
	row, err := sc.delivered(ctx, n)
	if err != nil {
		return Row{Err: err}
	}
	forced := n.wx.ForceRefreshRequests()
	row.Detail = fmt.Sprintf("token revoked %d times by another system, kefu fetched the new one after %d; kefu's own forced refreshes %d", revoked, fetches, forced)
	switch {
	case revoked == 0:
		row.Err = fmt.Errorf("no revocation took: %s", strings.Join(refusals, "; "))
	case fetches < revoked:
		row.Err = fmt.Errorf("kefu fetched a token after %d of %d revocations: the race did not reach it", fetches, revoked)
	}
	return row
}

// sentCount sums the messages of sentMessages.
func sentCount(sent map[string]map[string]int) int {
	n := 0
	for _, kinds := range sent {
		for _, c := range kinds {
			n += c
		}
	}
	return n
}
