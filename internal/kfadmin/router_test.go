package kfadmin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
)

// stubAgents is a scripted WeChat for the Router: what it answers and how
// often it was asked.
type stubAgents struct {
	mu        sync.Mutex
	online    []wechat.OnlineKf
	queue     wechat.WaitCases
	err       error
	waitCalls int
	calls     atomic.Int64
}

func (s *stubAgents) GetOnlineKfList(context.Context) ([]wechat.OnlineKf, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wechat.OnlineKf(nil), s.online...), s.err
}

func (s *stubAgents) GetWaitCase(context.Context) (wechat.WaitCases, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waitCalls++
	return s.queue, s.err
}

func (s *stubAgents) set(online ...wechat.OnlineKf) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.online = online
}

func (s *stubAgents) polled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitCalls > 0
}

// testClock is a settable clock for the Router.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(testStart.UnixNano())
	return c
}
func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type routerFixture struct {
	t      testing.TB
	groups *kfadmin.Groups
	agents *stubAgents
	clock  *testClock
	router *kfadmin.Router
}

// newRouterFixture creates the groups (name → members, keywords), then
// starts a Router whose background poll runs once (the interval is an
// hour) and waits for that poll, so that later polls are the test's.
func newRouterFixture(t testing.TB, groups map[string][2][]string, online ...wechat.OnlineKf) *routerFixture {
	t.Helper()
	ctx := context.Background()
	g, _ := newGroups(t)
	for name, spec := range groups {
		if _, err := g.Create(ctx, name, spec[1]); err != nil {
			t.Fatal(err)
		}
		if len(spec[0]) > 0 {
			if _, err := g.AddMembers(ctx, name, spec[0]...); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := &routerFixture{t: t, groups: g, agents: &stubAgents{online: online}, clock: newTestClock()}
	r, err := kfadmin.NewRouter(kfadmin.RouterConfig{Groups: g, Agents: f.agents, RefreshInterval: time.Hour, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	f.router = r
	natstest.Eventually(t, 10*time.Second, f.agents.polled, "the first background poll")
	f.refresh()
	return f
}

func (f *routerFixture) refresh() {
	f.t.Helper()
	if err := f.router.Refresh(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *routerFixture) route(openid, text string) string {
	return f.router.Route(context.Background(), openid, text)
}

func TestRouterKeywords(t *testing.T) {
	f := newRouterFixture(t, map[string][2][]string{
		"billing":  {{"alice@test", "bob@test"}, {"退款", "Refund"}},
		"login":    {{"carol@test"}, {"login"}},
		"account":  {{"dave@test"}, {"login failed"}},
		"samelen1": {{"erin@test"}, {"abcd"}},
		"samelen2": {{"frank@test"}, {"wxyz"}},
		"twin-b":   {{"gina@test"}, {"twin"}},
		"twin-a":   {{"hank@test"}, {"twin"}},
		"empty":    {nil, {"nobody"}},
		"silent":   {{"ivan@test"}, nil},
	},
		kfOnline("alice@test", 3, 5), kfOnline("bob@test", 0, 5), kfOnline("carol@test", 0, 5), kfOnline("dave@test", 0, 5),
		kfOnline("erin@test", 0, 5), kfOnline("frank@test", 0, 5), kfOnline("gina@test", 0, 5), kfOnline("hank@test", 0, 5),
		kfOnline("ivan@test", 0, 5))
	tests := []struct {
		name, text, want string
	}{
		{"a keyword routes to the least-loaded member of its group", "我要退款，谢谢", "bob@test"},
		{"keywords match case-insensitively", "I want a REFUND", "bob@test"},
		{"the longest matching keyword wins", "my login failed again", "dave@test"},
		{"equally long keywords: the one earlier in the text wins", "wxyz then abcd", "frank@test"},
		{"the same keyword in two groups: the group name sorting first wins", "twin", "hank@test"},
		{"no keyword: any agent", "hello", ""},
		{"a group without members never matches", "nobody home", ""},
		{"empty content (not a text message): any agent", "", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.route(string(rune('a'+i)), tt.text); got != tt.want {
				t.Fatalf("Route(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestRouterFallsBackToTheNextMatchingGroup(t *testing.T) {
	offline := kfOnline("dave@test", 0, 5)
	offline.Status = 0
	f := newRouterFixture(t, map[string][2][]string{
		"vip":     {{"dave@test"}, {"vip refund"}},
		"billing": {{"alice@test"}, {"refund"}},
	}, offline, kfOnline("alice@test", 3, 5))
	if got := f.route("o1", "vip refund please"); got != "alice@test" {
		t.Fatalf("got %q: want the longer keyword's group skipped while nobody in it is online", got)
	}
	f.agents.set(kfOnline("alice@test", 3, 5)) // and now nobody anywhere
	f.refresh()
	f.agents.set()
	f.refresh()
	if got := f.route("o2", "vip refund please"); got != "" {
		t.Fatalf("got %q with nobody online, want any agent", got)
	}
}

func TestRouterNeverCallsWeChatOnTheRequestPath(t *testing.T) {
	f := newRouterFixture(t, map[string][2][]string{"billing": {{"alice@test"}, {"refund"}}}, kfOnline("alice@test", 0, 5))
	before := f.agents.calls.Load()
	for range 100 {
		if f.route("o1", "refund") != "alice@test" {
			t.Fatal("not routed")
		}
	}
	if after := f.agents.calls.Load(); after != before {
		t.Fatalf("Route called WeChat %d times", after-before)
	}
}

func TestRouterStopsRoutingOnAStaleView(t *testing.T) {
	f := newRouterFixture(t, map[string][2][]string{"billing": {{"alice@test"}, {"refund"}}}, kfOnline("alice@test", 0, 5))
	if got := f.route("o1", "refund"); got != "alice@test" {
		t.Fatalf("fresh view: %q", got)
	}
	// The default MaxAge is three intervals (of an hour here); WeChat
	// fails meanwhile.
	f.agents.mu.Lock()
	f.agents.err = errors.New("wechat getonlinekflist: errcode -1: system error")
	f.agents.mu.Unlock()
	f.clock.Advance(3*time.Hour + time.Second)
	if err := f.router.Refresh(context.Background()); err == nil {
		t.Fatal("refresh did not report the failure")
	}
	if got := f.route("o2", "refund"); got != "" {
		t.Fatalf("stale view routed to %q; want any agent", got)
	}
	f.agents.mu.Lock()
	f.agents.err = nil
	f.agents.mu.Unlock()
	f.refresh()
	if got := f.route("o3", "refund"); got != "alice@test" {
		t.Fatalf("after recovery: %q", got)
	}
}

func TestRouterNoViewYetMeansAnyAgent(t *testing.T) {
	g, _ := newGroups(t)
	ctx := context.Background()
	if _, err := g.Create(ctx, "billing", []string{"refund"}); err != nil {
		t.Fatal(err)
	}
	g.AddMembers(ctx, "billing", "alice@test")
	agents := &stubAgents{err: errors.New("wechat down")}
	r, err := kfadmin.NewRouter(kfadmin.RouterConfig{Groups: g, Agents: agents})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(ctx)
	if got := r.Route(ctx, "o1", "refund"); got != "" {
		t.Fatalf("got %q before any good poll", got)
	}
}

// Customers routed between two polls count towards their agent, so a burst
// is spread over the group instead of all pinned to one agent.
func TestRouterSpreadsABurstBetweenPolls(t *testing.T) {
	f := newRouterFixture(t, map[string][2][]string{"billing": {{"alice@test", "bob@test"}, {"refund"}}},
		kfOnline("alice@test", 0, 2), kfOnline("bob@test", 0, 2))
	got := []string{f.route("o1", "refund"), f.route("o2", "refund"), f.route("o1", "refund again"), f.route("o3", "refund")}
	want := []string{"alice@test", "bob@test", "alice@test", "alice@test"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("burst routed %q, want %q (o1 writing twice keeps alice and counts once)", got, want)
		}
	}
	// The next poll shows what WeChat did with them (here: alice already
	// closed one); its numbers replace the local counts, which would
	// otherwise make alice look busier (1+2 against 1+1).
	f.clock.Advance(time.Second)
	f.agents.set(kfOnline("alice@test", 1, 2), kfOnline("bob@test", 1, 2))
	f.refresh()
	if got := f.route("o4", "refund"); got != "alice@test" {
		t.Fatalf("after the poll: %q, want alice (equal load, name first)", got)
	}
}

func TestRouterFollowsGroupChanges(t *testing.T) {
	f := newRouterFixture(t, map[string][2][]string{"billing": {{"alice@test"}, {"refund"}}},
		kfOnline("alice@test", 0, 5), kfOnline("bob@test", 0, 5))
	ctx := context.Background()
	if _, err := f.groups.SetKeywords(ctx, "billing", []string{"退货"}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return f.route("o1", "我要退货") == "alice@test" }, "the new keyword")
	if got := f.route("o2", "refund"); got != "" {
		t.Errorf("a removed keyword still routes to %q", got)
	}
	if _, err := f.groups.Create(ctx, "tech", []string{"bug"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.groups.AddMembers(ctx, "tech", "bob@test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return f.route("o3", "found a bug") == "bob@test" }, "the new group")
	if err := f.groups.Delete(ctx, "tech"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return f.route("o4", "found a bug") == "" }, "the deleted group to stop routing")
}

// The Router spends no WeChat call while no group can route. It runs in a
// synctest bubble, so that "twenty intervals without a call" is twenty
// ticks the poll loop really took (synctest.Wait: every goroutine of the
// Router is blocked again) rather than a sleep that may end before the
// loop ran; the groups come from groupFeed, since a NATS watch cannot run
// in a bubble (TestRouterFollowsGroupChanges watches a real bucket).
func TestRouterPollsOnlyWhileAGroupCanRoute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		feed := newGroupFeed()
		feed.put(t, kfadmin.Group{Name: "nokeywords", Members: []string{"alice@test"}})
		feed.updates <- nil // the end of the current values
		agents := &stubAgents{}
		const interval = time.Second
		r, err := kfadmin.NewRouter(kfadmin.RouterConfig{Groups: kfadmin.NewGroups(feed), Agents: agents, RefreshInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer r.Stop(ctx)
		time.Sleep(20 * interval)
		synctest.Wait()
		if n := agents.calls.Load(); n != 0 {
			t.Fatalf("%d WeChat calls in twenty intervals with no group that can route", n)
		}
		feed.put(t, kfadmin.Group{Name: "nokeywords", Members: []string{"alice@test"}, Keywords: []string{"refund"}})
		synctest.Wait() // the Router has the new table
		time.Sleep(interval)
		synctest.Wait()
		if !agents.polled() {
			t.Fatal("no poll in the interval after a group could route")
		}
	})
}

// groupFeed is a groups bucket that can only be watched: the test hands
// the Router its entries, as a NATS watcher would, without a server.
type groupFeed struct {
	jetstream.KeyValue // any other method panics: the Router must not call it
	updates            chan jetstream.KeyValueEntry
}

func newGroupFeed() *groupFeed {
	return &groupFeed{updates: make(chan jetstream.KeyValueEntry, 16)}
}

// put hands the Router the group as a put of its key.
func (f *groupFeed) put(t *testing.T, g kfadmin.Group) {
	t.Helper()
	data, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	f.updates <- groupEntry{key: g.Name, value: data}
}

// WatchAll forwards the fed entries until ctx ends, then closes the
// updates, as a watcher does.
func (f *groupFeed) WatchAll(ctx context.Context, _ ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	out := make(chan jetstream.KeyValueEntry)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-f.updates:
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return feedWatcher(out), nil
}

type feedWatcher chan jetstream.KeyValueEntry

func (w feedWatcher) Updates() <-chan jetstream.KeyValueEntry { return w }
func (w feedWatcher) Stop() error                             { return nil }

type groupEntry struct {
	jetstream.KeyValueEntry
	key   string
	value []byte
}

func (e groupEntry) Key() string                     { return e.key }
func (e groupEntry) Value() []byte                   { return e.value }
func (e groupEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

func TestRouterConfigIsValidated(t *testing.T) {
	g, _ := newGroups(t)
	if _, err := kfadmin.NewRouter(kfadmin.RouterConfig{Groups: g}); err == nil {
		t.Error("no Agents accepted")
	}
	if _, err := kfadmin.NewRouter(kfadmin.RouterConfig{Agents: &stubAgents{}}); err == nil {
		t.Error("no Groups accepted")
	}
}

// BenchmarkRoute measures the request-path cost of a Router with 20
// groups of 10 keywords each, for a message that matches one of them.
func BenchmarkRoute(b *testing.B) {
	groups := map[string][2][]string{}
	var online []wechat.OnlineKf
	for i := range 20 {
		name := fmt.Sprintf("group%02d", i)
		var kws []string
		for k := range 10 {
			kws = append(kws, fmt.Sprintf("关键词%d-%d", i, k))
		}
		members := []string{fmt.Sprintf("a%d@test", i), fmt.Sprintf("b%d@test", i)}
		groups[name] = [2][]string{members, kws}
		online = append(online, kfOnline(members[0], 1, 5), kfOnline(members[1], 2, 5))
	}
	f := newRouterFixture(b, groups, online...)
	text := "您好，我想咨询一下关键词13-7相关的问题，订单号 1234567890"
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if f.route("o1", text) == "" {
			b.Fatal("not routed")
		}
	}
}
