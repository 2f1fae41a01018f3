package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/httpapi"
)

// errSignatureReused means a signature came back with another message.
var errSignatureReused = errors.New("signature already used with another message")

// sigGuard spends callback signatures in a KV bucket shared by every
// replica: the first use stores the SHA-256 of the message, and a later
// use must carry the same message. The bucket's TTL (the de-duplication
// window, more than twice the freshness window) forgets a signature only
// once its timestamp can no longer be fresh.
type sigGuard struct{ kv jetstream.KeyValue }

func (g *sigGuard) spend(ctx context.Context, signature string, message []byte) error {
	sum := sha256.Sum256(message)
	key := "sig." + signature
	for attempt := 0; ; attempt++ {
		_, err := g.kv.Create(ctx, key, sum[:])
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("record callback signature: %w", err)
		}
		entry, err := g.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) && attempt == 0 {
			continue // expired between the two calls: record it afresh
		}
		if err != nil {
			return fmt.Errorf("read callback signature: %w", err)
		}
		if !bytes.Equal(entry.Value(), sum[:]) {
			return errSignatureReused
		}
		return nil
	}
}

// ipAllowlist holds WeChat's callback addresses. Until the first list is
// known the list is nil and callbacks are answered 503 (WeChat retries);
// a failed refresh keeps the last list.
type ipAllowlist struct {
	src  CallbackIPSource
	list atomic.Pointer[[]netip.Prefix]

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// loaded reports whether a first list is known.
func (a *ipAllowlist) loaded() bool { return a.list.Load() != nil }

func (a *ipAllowlist) allows(addr netip.Addr) (known, ok bool) {
	list := a.list.Load()
	if list == nil {
		return false, false
	}
	addr = addr.Unmap()
	for _, p := range *list {
		if p.Contains(addr) {
			return true, true
		}
	}
	return true, false
}

// parseIPList reads getcallbackip entries: addresses and CIDR blocks.
// Entries that do not parse are skipped and counted.
func parseIPList(entries []string) (list []netip.Prefix, skipped int) {
	for _, e := range entries {
		e = strings.TrimSpace(e)
		var p netip.Prefix
		var err error
		if strings.Contains(e, "/") {
			p, err = netip.ParsePrefix(e)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(e); err == nil {
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			skipped++
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		list = append(list, p.Masked())
	}
	return list, skipped
}

// RefreshCallbackIPs fetches WeChat's callback addresses now. On failure
// the list in use is kept. Start runs it in the background; tests call it.
func (s *Service) RefreshCallbackIPs(ctx context.Context) error {
	if s.ips == nil {
		return errors.New("ingest: the callback IP allow-list is off")
	}
	entries, err := s.ips.src.GetCallbackIP(ctx)
	if err != nil {
		return fmt.Errorf("ingest: getcallbackip: %w", err)
	}
	list, skipped := parseIPList(entries)
	if len(list) == 0 {
		return fmt.Errorf("ingest: getcallbackip: none of %d entries is an address or CIDR block", len(entries))
	}
	if skipped > 0 {
		s.log.Warn("getcallbackip: entries skipped that are neither an address nor a CIDR block", zap.Int("skipped", skipped))
	}
	s.ips.list.Store(&list)
	s.metrics.callbackIPs.Set(float64(len(list)))
	return nil
}

// Start begins refreshing the callback IP allow-list when it is on: at
// once, then every IPRefresh; after a failure sooner, with backoff. It
// does not block.
func (s *Service) Start(context.Context) error {
	if s.ips == nil {
		return nil
	}
	a := s.ips
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	go s.refreshLoop(ctx, a.done)
	return nil
}

// Stop ends the refresher.
func (s *Service) Stop(ctx context.Context) error {
	if s.ips == nil {
		return nil
	}
	a := s.ips
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.cancel = nil
	a.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) refreshLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	const firstRetry, maxRetry = time.Second, 5 * time.Minute
	retry := firstRetry
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := s.RefreshCallbackIPs(rctx)
		cancel()
		wait := s.cfg.IPRefresh
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("refresh of WeChat's callback IPs failed; keeping the last list", zap.Error(err), zap.Bool("have_list", s.ips.loaded()))
			wait, retry = min(retry, s.cfg.IPRefresh), min(2*retry, maxRetry)
		} else {
			retry = firstRetry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// allowedSource applies the IP allow-list, answering 403 for an address
// not on it and 503 while no list is known.
func (s *Service) allowedSource(w http.ResponseWriter, r *http.Request) bool {
	if s.ips == nil {
		return true
	}
	known, ok := s.ips.allows(s.cfg.ClientIP(r))
	switch {
	case ok:
		return true
	case !known:
		httpapi.SetRetryAfter(w, unavailableRetry)
		s.reject(w, reasonIPListUnknown, http.StatusServiceUnavailable, "callback IP allow-list not loaded yet")
	default:
		s.reject(w, reasonIP, http.StatusForbidden, "source address not allowed")
	}
	return false
}

// peerIP is the TCP peer of r.
func peerIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}
