package kfadmin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/wechat"
)

// DefaultRefreshInterval is how often the Router polls the online agents
// and the queue.
const DefaultRefreshInterval = 10 * time.Second

// AgentSource is what the Router polls; *wechat.Client implements it.
type AgentSource interface {
	GetOnlineKfList(ctx context.Context) ([]wechat.OnlineKf, error)
	GetWaitCase(ctx context.Context) (wechat.WaitCases, error)
}

// RouterConfig configures a Router.
type RouterConfig struct {
	// Groups is the group store the Router watches. Required.
	Groups *Groups
	// Agents supplies the online agents and the queue. Required.
	Agents AgentSource
	// RefreshInterval is how often the online list and the queue are
	// polled while some group can route (it has members and keywords).
	// Default DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MaxAge is how old the last good poll may be before Route stops
	// routing (an agent who went offline since would leave a pinned
	// customer waiting for nobody). Default 3 × RefreshInterval.
	MaxAge time.Duration
	// Choice turns on the customers' choice of agent (choice.go); zero:
	// off.
	Choice ChoiceConfig
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *RouterConfig) setDefaults() {
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 3 * c.RefreshInterval
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate names what is missing.
func (c RouterConfig) Validate() error {
	switch {
	case c.Groups == nil:
		return errors.New("kf router: Groups is required")
	case c.Agents == nil:
		return errors.New("kf router: Agents is required")
	}
	return c.Choice.validate()
}

// Router routes a customer's text message to a group by keyword and to
// the least-loaded online member of that group; ingest puts the answer in
// its transfer_customer_service reply. See the package documentation.
type Router struct {
	cfg RouterConfig
	log *zap.Logger

	table atomic.Pointer[routingTable] // rebuilt by the group watcher

	mu     sync.Mutex
	agents *agentSnapshot            // last good poll; nil before the first
	routed map[string]routedCustomer // by openid, since the last poll
	extra  map[string]int            // lower-case kf → customers in routed

	refreshMu sync.Mutex // one poll at a time
	// getkflist's answer and when it was read (choice.go); refreshMu.
	accounts   map[string]wechat.KfInfo
	accountsAt time.Time
	loaded     chan struct{}
	loadOnce   sync.Once
	cancel     context.CancelFunc
	done       sync.WaitGroup
}

// agentSnapshot is one poll of WeChat.
type agentSnapshot struct {
	online []wechat.OnlineKf
	queued map[string]int // lower-case kf → customers waiting for that agent
	at     time.Time      // when the poll started
	// accounts (getkflist, for nicknames and 工号) is polled only while the
	// customers' choice is on; lower-case kf → account.
	accounts map[string]wechat.KfInfo
}

// KfListInterval is how often the Router rereads getkflist for the menu
// of agents (nicknames and 工号), besides when an unknown agent is online.
const KfListInterval = time.Minute

// accountsStale reports whether getkflist must be read again; refreshMu
// is held.
func (r *Router) accountsStale(online []wechat.OnlineKf, now time.Time) bool {
	if r.accounts == nil || now.Sub(r.accountsAt) >= KfListInterval {
		return true
	}
	for _, k := range online {
		if _, ok := r.accounts[strings.ToLower(k.KfAccount)]; !ok {
			return true
		}
	}
	return false
}

// kfLister is the part of *wechat.Client the menu of agents needs.
type kfLister interface {
	GetKfList(ctx context.Context) ([]wechat.KfInfo, error)
}

// routedCustomer is a routing decision WeChat's lists may not show yet.
type routedCustomer struct {
	kf    string
	group string
	at    time.Time
}

// routingTable is an immutable view of the groups that can route.
type routingTable struct {
	groups   map[string]Group
	keywords []keyword // every keyword of every group with members
}

type keyword struct {
	lower string
	runes int
	group string
}

// NewRouter checks cfg and returns a Router; Start it before use.
func NewRouter(cfg RouterConfig) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, log: cfg.Logger, routed: map[string]routedCustomer{}, extra: map[string]int{}, loaded: make(chan struct{})}
	r.table.Store(buildTable(nil))
	return r, nil
}

// Start watches the groups bucket and polls WeChat in the background. It
// returns once the current groups are loaded (or ctx ends); the first poll
// runs in the background, so a slow WeChat never delays start-up.
func (r *Router) Start(ctx context.Context) error {
	if r.cancel != nil {
		return errors.New("kf router: already started")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done.Add(2)
	go func() { defer r.done.Done(); r.watch(runCtx) }()
	go func() { defer r.done.Done(); r.poll(runCtx) }()
	select {
	case <-r.loaded:
		return nil
	case <-ctx.Done():
		cancel()
		r.done.Wait()
		return fmt.Errorf("kf router: load groups: %w", ctx.Err())
	}
}

// Stop ends the background work and waits for it (or for ctx).
func (r *Router) Stop(ctx context.Context) error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	stopped := make(chan struct{})
	go func() { r.done.Wait(); close(stopped) }()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Route returns the kf account a customer who wrote content should be
// transferred to, or "" to let 多客服 pick any agent: no keyword matched,
// nobody in the matched groups is online, or the Router has no recent
// poll of WeChat. It never calls WeChat or NATS, so ingest can ask it on
// the 5-second callback path.
func (r *Router) Route(_ context.Context, openid, content string) string {
	if content == "" {
		return ""
	}
	table := r.table.Load()
	groups := table.match(content)
	if len(groups) == 0 {
		return ""
	}
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := r.agents
	if snap == nil || now.Sub(snap.at) > r.cfg.MaxAge {
		r.log.Debug("kf route skipped: no recent poll of the online agents")
		return ""
	}
	// A customer who writes again before WeChat's lists show them keeps
	// the agent chosen the first time, and is counted once.
	prev, seen := r.routed[openid]
	online := slices.Clone(snap.online)
	for i := range online {
		online[i].AcceptedCase += r.extra[strings.ToLower(online[i].KfAccount)]
	}
	queued := func(kf string) int { return snap.queued[strings.ToLower(kf)] }
	for _, name := range groups {
		grp := table.groups[name]
		if seen && prev.group == name {
			if kf, err := PickAgent(online, []string{prev.kf}, nil); err == nil && slices.Contains(grp.Members, prev.kf) {
				return kf.KfAccount
			}
		}
		kf, err := PickAgent(online, grp.Members, queued)
		if err != nil {
			continue
		}
		if seen {
			r.uncount(prev.kf)
		}
		r.routed[openid] = routedCustomer{kf: kf.KfAccount, group: name, at: now}
		r.extra[strings.ToLower(kf.KfAccount)]++
		r.log.Debug("kf route", zap.String("group", name), zap.String("kf_account", kf.KfAccount))
		return kf.KfAccount
	}
	return ""
}

// Refresh polls the online agents and the queue once. The background loop
// calls it; tests and start-up code may too.
func (r *Router) Refresh(ctx context.Context) error {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	started := r.cfg.Now()
	online, err := r.cfg.Agents.GetOnlineKfList(ctx)
	if err != nil {
		return fmt.Errorf("kf router: %w", err)
	}
	queue, err := r.cfg.Agents.GetWaitCase(ctx)
	if err != nil {
		return fmt.Errorf("kf router: %w", err)
	}
	snap := &agentSnapshot{online: online, queued: queuedFor(queue), at: started}
	if kl, ok := r.cfg.Agents.(kfLister); ok && r.cfg.Choice.on() && r.accountsStale(online, started) {
		// Nicknames and 工号 change rarely: read every KfListInterval, or
		// when an agent is online that the last read did not list. Without
		// them the menu shows accounts.
		if list, err := kl.GetKfList(ctx); err == nil {
			r.accounts = make(map[string]wechat.KfInfo, len(list))
			for _, k := range list {
				r.accounts[strings.ToLower(k.KfAccount)] = k
			}
			r.accountsAt = started
		} else {
			r.log.Debug("kf router: getkflist failed; the menu of agents shows accounts", zap.Error(err))
		}
	}
	snap.accounts = r.accounts
	r.mu.Lock()
	defer r.mu.Unlock()
	r.agents = snap
	// Decisions made before the poll started are now in WeChat's lists
	// (accepted_case or the queue); later ones are not yet.
	for openid, rc := range r.routed {
		if !rc.at.After(started) {
			delete(r.routed, openid)
			r.uncount(rc.kf)
		}
	}
	return nil
}

// uncount forgets one routed customer of kf; r.mu is held.
func (r *Router) uncount(kf string) {
	k := strings.ToLower(kf)
	if r.extra[k]--; r.extra[k] <= 0 {
		delete(r.extra, k)
	}
}

// poll refreshes every RefreshInterval while some group can route or the
// customers' choice is on; otherwise it spends none of WeChat's API quota.
func (r *Router) poll(ctx context.Context) {
	select { // the groups decide whether to poll at all
	case <-r.loaded:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(r.cfg.RefreshInterval)
	defer t.Stop()
	failing := false // log transitions, not every failed poll
	for {
		if r.table.Load().routable() || r.cfg.Choice.on() {
			pctx, cancel := context.WithTimeout(ctx, r.cfg.RefreshInterval)
			err := r.Refresh(pctx)
			cancel()
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				failing = true
				r.log.Warn("kf router: poll of the online agents failed; keyword routing pauses once the last good poll is older than max_age",
					zap.Error(err), zap.Duration("max_age", r.cfg.MaxAge))
			case err == nil && failing:
				failing = false
				r.log.Info("kf router: poll of the online agents works again")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watch follows the groups bucket. A watcher delivers every current value,
// then nil, then changes; if it ends (NATS trouble) a new one starts and
// rebuilds the table from scratch.
func (r *Router) watch(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := r.watchOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("kf router: watch groups", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (r *Router) watchOnce(ctx context.Context) error {
	w, err := r.cfg.Groups.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	groups := map[string]Group{}
	initial := true
	for e := range w.Updates() {
		if e == nil {
			initial = false
			r.table.Store(buildTable(groups))
			r.loadOnce.Do(func() { close(r.loaded) })
			continue
		}
		if e.Operation() == jetstream.KeyValuePut {
			grp, err := decodeGroup(e.Key(), e.Value())
			if err != nil {
				r.log.Warn("kf router: skip undecodable group", zap.String("group", e.Key()), zap.Error(err))
				delete(groups, e.Key())
			} else {
				groups[e.Key()] = grp
			}
		} else {
			delete(groups, e.Key())
		}
		if !initial {
			r.table.Store(buildTable(groups))
		}
	}
	return errors.New("watcher closed")
}

func buildTable(groups map[string]Group) *routingTable {
	t := &routingTable{groups: make(map[string]Group, len(groups))}
	for name, g := range groups {
		t.groups[name] = g
		if len(g.Members) == 0 {
			continue
		}
		for _, k := range g.Keywords {
			if low := strings.ToLower(k); low != "" {
				t.keywords = append(t.keywords, keyword{lower: low, runes: utf8.RuneCountInString(low), group: name})
			}
		}
	}
	return t
}

func (t *routingTable) routable() bool { return len(t.keywords) > 0 }

// match returns the groups whose keywords occur in content, best first:
// the longest keyword (in characters) wins; between equally long ones, the
// one found earlier in the text; then the group name, alphabetically.
func (t *routingTable) match(content string) []string {
	if len(t.keywords) == 0 {
		return nil
	}
	text := strings.ToLower(content)
	type hit struct {
		runes, pos int
		group      string
	}
	var hits []hit
	for _, k := range t.keywords {
		if i := strings.Index(text, k.lower); i >= 0 {
			hits = append(hits, hit{k.runes, i, k.group})
		}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if a.runes != b.runes {
			return b.runes - a.runes
		}
		if a.pos != b.pos {
			return a.pos - b.pos
		}
		return strings.Compare(a.group, b.group)
	})
	var out []string
	for _, h := range hits {
		if !slices.Contains(out, h.group) {
			out = append(out, h.group)
		}
	}
	return out
}
