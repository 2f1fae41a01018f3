package wechat

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVTokenSource shares one access token between every replica through the
// kefu_token bucket, so that replicas never invalidate each other's tokens.
//
// The bucket holds, under the appid, the JSON {sealed_token, expires_at,
// fetched_at, invalid} — the token sealed with TokenOptions.SealKey (see
// TokenSealKey), or {token, …} in clear without a key — and under "<appid>.lease" a short refresh lease {owner,
// expires_at}. A process that finds the token missing, rejected or inside the
// refresh margin takes the lease with a compare-and-set (Create when absent,
// Update at the read revision when expired); only the holder calls WeChat.
// The others keep using the old token when it is still valid, and otherwise
// poll the bucket until the holder has stored the new one or its lease has
// expired (a crashed holder), in which case one of them takes over. So N
// processes starting at once cause one fetch, and N callers rejected with
// 40001 at once cause one fetch: Invalidate marks the stored token invalid
// only while it is still the rejected one. Under "<appid>.force" the bucket
// keeps the times of the forced refreshes of the last 24 hours, updated
// with a compare-and-set, so that all replicas together keep to WeChat's
// one per 30 s and 20 a day.
//
// The bucket must exist (created at start-up with the other buckets). Leases
// expire by their own timestamp rather than a KV TTL so that the bucket needs
// no per-key TTL support. The token is never logged.
type KVTokenSource struct {
	kv       jetstream.KeyValue
	fetcher  TokenFetcher
	opts     TokenOptions
	key      string
	leaseKey string
	owner    string
	gate     *kvGate
	codec    tokenCodec

	mu       sync.Mutex
	local    tokenState
	localEnd time.Time
}

// tokenLease is the value of the lease key.
type tokenLease struct {
	Owner     string    `json:"owner"`
	ExpiresAt time.Time `json:"expires_at"`
}

// NewKVTokenSource returns a source backed by kv (the kefu_token bucket).
// opts.AppID is required: it is the key.
func NewKVTokenSource(kv jetstream.KeyValue, fetcher TokenFetcher, opts TokenOptions) (*KVTokenSource, error) {
	switch {
	case kv == nil:
		return nil, errors.New("kv token source: kv is required")
	case fetcher == nil:
		return nil, errors.New("kv token source: fetcher is required")
	case opts.AppID == "":
		return nil, errors.New("kv token source: TokenOptions.AppID is required")
	}
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	codec, err := newTokenCodec(opts.SealKey, opts.AppID)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	if _, err := cryptorand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("kv token source: owner id: %w", err)
	}
	return &KVTokenSource{
		kv:       kv,
		fetcher:  fetcher,
		opts:     opts,
		key:      opts.AppID,
		leaseKey: opts.AppID + ".lease",
		owner:    hex.EncodeToString(id[:]),
		gate:     &kvGate{kv: kv, key: opts.AppID + ".force", opts: opts},
		codec:    codec,
	}, nil
}

// Token implements TokenSource.
func (s *KVTokenSource) Token(ctx context.Context) (string, error) {
	if tok, ok := s.cached(); ok {
		return tok, nil
	}
	for {
		st, err := s.load(ctx)
		if err != nil {
			return "", err
		}
		now := s.opts.Now()
		if st.fresh(now, s.opts.RefreshMargin) {
			s.remember(st)
			return st.Token, nil
		}
		leaseRev, acquired, err := s.acquireLease(ctx)
		if err != nil {
			if st.usable(now) {
				return st.Token, nil
			}
			return "", err
		}
		if acquired {
			tok, err := s.refresh(ctx, leaseRev)
			if err != nil && st.usable(s.opts.Now()) {
				// The old token still works; a later call tries again.
				return st.Token, nil
			}
			return tok, err
		}
		if st.usable(now) {
			// Another process is refreshing; the old token works meanwhile.
			return st.Token, nil
		}
		if err := s.pause(ctx); err != nil {
			return "", fmt.Errorf("wait for access token refresh: %w", err)
		}
	}
}

// Invalidate implements TokenSource: it marks the stored token invalid if
// it is still bad, with a compare-and-set so that concurrent callers and a
// concurrent refresh cannot be overwritten.
func (s *KVTokenSource) Invalidate(ctx context.Context, bad string) error {
	s.forget(bad)
	// Each lost race means someone else changed the entry; re-reading shows
	// whether there is still anything to do. Bounded for safety.
	for range 10 {
		entry, err := s.kv.Get(ctx, s.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalidate access token: read %s: %w", s.kv.Bucket(), err)
		}
		st, ok := s.codec.decode(entry.Value())
		if !ok || st.Token != bad || st.Invalid {
			return nil
		}
		st.Invalid = true
		value, err := s.codec.encode(st)
		if err != nil {
			return fmt.Errorf("invalidate access token: encode: %w", err)
		}
		_, err = s.kv.Update(ctx, s.key, value, entry.Revision())
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("invalidate access token: write %s: %w", s.kv.Bucket(), err)
		}
	}
	return nil
}

// refresh runs while holding the lease at leaseRev.
func (s *KVTokenSource) refresh(ctx context.Context, leaseRev uint64) (string, error) {
	defer s.releaseLease(leaseRev)
	// The previous holder may have stored a fresh token between our read and
	// our lease.
	st, err := s.load(ctx)
	if err != nil {
		return "", err
	}
	if st.fresh(s.opts.Now(), s.opts.RefreshMargin) {
		s.remember(st)
		return st.Token, nil
	}
	fetched, err := renew(ctx, s.fetcher, st, s.gate)
	if err != nil {
		return "", fmt.Errorf("fetch access token: %w", err)
	}
	st = newTokenState(fetched, s.opts.Now())
	value, err := s.codec.encode(st)
	if err != nil {
		return "", fmt.Errorf("store access token: encode: %w", err)
	}
	// Put, not a compare-and-set: the lease makes us the only writer of a new
	// token, and a concurrent Invalidate can only concern the old one.
	// A failed Put is not fatal: the token is valid even if the others cannot
	// see it; they fetch their own, and stable_token returns the same one.
	_, _ = s.kv.Put(ctx, s.key, value)
	s.remember(st)
	return st.Token, nil
}

// load reads the stored token; a missing or unreadable entry is the zero
// state, which is refreshed (and so repaired) like an expired one.
func (s *KVTokenSource) load(ctx context.Context) (tokenState, error) {
	entry, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return tokenState{}, nil
	}
	if err != nil {
		return tokenState{}, fmt.Errorf("read access token from %s: %w", s.kv.Bucket(), err)
	}
	st, ok := s.codec.decode(entry.Value())
	if !ok {
		return tokenState{}, nil
	}
	return st, nil
}

// acquireLease tries to become the refresher. It reports the lease
// revision when it succeeded.
func (s *KVTokenSource) acquireLease(ctx context.Context) (rev uint64, acquired bool, err error) {
	value, err := json.Marshal(tokenLease{Owner: s.owner, ExpiresAt: s.opts.Now().Add(s.opts.LeaseTTL)})
	if err != nil {
		return 0, false, fmt.Errorf("token lease: encode: %w", err)
	}
	entry, err := s.kv.Get(ctx, s.leaseKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = s.kv.Create(ctx, s.leaseKey, value)
	case err != nil:
		return 0, false, fmt.Errorf("token lease: read: %w", err)
	default:
		var held tokenLease
		if json.Unmarshal(entry.Value(), &held) == nil && s.opts.Now().Before(held.ExpiresAt) {
			return 0, false, nil
		}
		// Expired (or unreadable): take it over at the revision we read.
		rev, err = s.kv.Update(ctx, s.leaseKey, value, entry.Revision())
	}
	if err == nil {
		return rev, true, nil
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("token lease: write: %w", err)
}

// releaseLease deletes the lease if it is still ours. It uses its own short
// context so that a caller's cancelled context does not leave the lease
// behind until it expires.
func (s *KVTokenSource) releaseLease(rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A failure only delays the next refresh until the lease expires.
	_ = s.kv.Delete(ctx, s.leaseKey, jetstream.LastRevision(rev))
}

// pause waits about one poll interval (jittered so that waiting processes
// do not read in lockstep).
func (s *KVTokenSource) pause(ctx context.Context) error {
	return apiSleep(ctx, s.opts.PollInterval/2+rand.N(s.opts.PollInterval/2+1))
}

func (s *KVTokenSource) cached() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if now.Before(s.localEnd) && s.local.fresh(now, s.opts.RefreshMargin) {
		return s.local.Token, true
	}
	return "", false
}

func (s *KVTokenSource) remember(st tokenState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.local = st
	s.localEnd = s.opts.Now().Add(s.opts.LocalCacheTTL)
}

func (s *KVTokenSource) forget(bad string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local.Token == bad {
		s.local = tokenState{}
	}
}

// kvGate is the forced-refresh budget shared by every replica through the
// kefu_token bucket.
type kvGate struct {
	kv   jetstream.KeyValue
	key  string
	opts TokenOptions
}

// reserve records a forced refresh with a compare-and-set. An unreadable
// record is replaced: losing the history can at worst cost WeChat's answer
// 45011 to one force, while keeping it would block forcing for good.
func (g *kvGate) reserve(ctx context.Context) error {
	for range 10 {
		var budget forceBudget
		var rev uint64
		entry, err := g.kv.Get(ctx, g.key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("forced refresh budget: read %s: %w", g.kv.Bucket(), err)
		default:
			rev = entry.Revision()
			_ = json.Unmarshal(entry.Value(), &budget)
		}
		if !budget.take(g.opts.Now(), g.opts) {
			return ErrForceRefreshLimited
		}
		value, err := json.Marshal(budget)
		if err != nil {
			return fmt.Errorf("forced refresh budget: encode: %w", err)
		}
		if rev == 0 {
			_, err = g.kv.Create(ctx, g.key, value)
		} else {
			_, err = g.kv.Update(ctx, g.key, value, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("forced refresh budget: write %s: %w", g.kv.Bucket(), err)
		}
	}
	return fmt.Errorf("forced refresh budget: %s keeps changing", g.kv.Bucket())
}
