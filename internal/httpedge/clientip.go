package httpedge

import (
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops is how many X-Forwarded-For hops ClientIP reads from the
// right. Real chains are a CDN and a load balancer or two; reading further
// would only spend time on what a client wrote itself.
const maxForwardedHops = 16

// maxForwardedBytes is the longest X-Forwarded-For line ClientIP parses. A
// longer line is ignored (the peer is the client): no proxy writes one, so it
// is a stranger's padding, and this keeps the work per request bounded.
const maxForwardedBytes = 2048

// ClientIP is the address of the client that sent r: the TCP peer, unless
// the peer is in trusted (reverse proxies, KEFU_TRUSTED_PROXIES), in which
// case it is the right-most X-Forwarded-For hop that is not itself trusted.
// Hops to the left of that one were written by the client and prove nothing.
// When every hop is trusted the left-most one is the client; when a hop does
// not parse, the trusted hop to its right is. The zero Addr means the peer
// address itself did not parse (never the case for a TCP listener).
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHop(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	hops := 0
	// Several header lines are one list, in order; walk it from the right.
	for i := len(values) - 1; i >= 0; i-- {
		line := values[i]
		if len(line) > maxForwardedBytes {
			return client
		}
		for line != "" {
			if hops == maxForwardedHops {
				return client
			}
			hops++
			var hop string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				line, hop = line[:j], line[j+1:]
			} else {
				line, hop = "", line
			}
			addr := parseHop(strings.TrimSpace(hop))
			if !addr.IsValid() {
				return client
			}
			client = addr
			if !isTrusted(addr, trusted) {
				return client
			}
		}
	}
	return client
}

// parseHop reads "1.2.3.4", "1.2.3.4:5678", "2001:db8::1" or
// "[2001:db8::1]:5678"; IPv4-mapped IPv6 addresses become IPv4 so that one
// client has one key.
func parseHop(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
