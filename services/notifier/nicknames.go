package notifier

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// nicknames caches agents' nicknames from getkflist. The list is fetched
// again when it is older than ttl, and early — at most every ttl/10 — when
// an account is missing from it (an agent added a minute ago). A failed
// fetch keeps the old list; a customer then reads the account, which is
// better than no message.
type nicknames struct {
	sender Sender
	ttl    time.Duration
	now    func() time.Time
	log    *zap.Logger

	fetchMu sync.Mutex // one getkflist at a time

	mu        sync.RWMutex
	names     map[string]string
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last attempt
}

func newNicknames(sender Sender, ttl time.Duration, now func() time.Time, log *zap.Logger) *nicknames {
	return &nicknames{sender: sender, ttl: ttl, now: now, log: log}
}

// Lookup returns account's nickname, or account itself when unknown.
func (n *nicknames) Lookup(ctx context.Context, account string) string {
	if account == "" {
		return ""
	}
	if nick, ok := n.cached(account); ok {
		return nick
	}
	n.refresh(ctx, account)
	n.mu.RLock()
	defer n.mu.RUnlock()
	if nick := n.names[account]; nick != "" {
		return nick
	}
	return account
}

// cached answers from the list when it is fresh and knows account, or
// when a fetch was tried too recently to try again (failures included, so
// an outage of getkflist does not turn every message into a fetch).
func (n *nicknames) cached(account string) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	now := n.now()
	nick := n.names[account]
	if nick != "" && now.Sub(n.fetchedAt) < n.ttl {
		return nick, true
	}
	if !n.triedAt.IsZero() && now.Sub(n.triedAt) < n.ttl/10 {
		if nick == "" {
			nick = account
		}
		return nick, true
	}
	return "", false
}

func (n *nicknames) refresh(ctx context.Context, account string) {
	n.fetchMu.Lock()
	defer n.fetchMu.Unlock()
	// Another caller may have fetched while this one waited.
	if _, ok := n.cached(account); ok {
		return
	}
	// triedAt is set when the fetch ends, so that callers arriving during
	// it wait for its result (on fetchMu) rather than take the account.
	list, err := n.sender.GetKfList(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.triedAt = n.now()
	if err != nil {
		n.log.Warn("getkflist failed; agents' accounts stand in for their nicknames", zap.Error(err))
		return
	}
	names := make(map[string]string, len(list))
	for _, k := range list {
		names[k.KfAccount] = k.KfNick
	}
	n.names, n.fetchedAt = names, n.now()
}
