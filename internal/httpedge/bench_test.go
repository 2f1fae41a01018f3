package httpedge_test

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/kefu-io/kefu/internal/httpedge"
)

// What the edge adds to a request: a client lookup and a bucket, or two
// digests and two comparisons.
func BenchmarkEdge(b *testing.B) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	r := httptest.NewRequest("POST", "/wechat/callback", nil)
	r.RemoteAddr = "10.0.0.1:4000"
	r.Header.Set("X-Forwarded-For", "198.51.100.7, 10.0.0.2")
	b.Run("ClientIP", func(b *testing.B) {
		for b.Loop() {
			httpedge.ClientIP(r, trusted)
		}
	})
	l := httpedge.NewLimiter(httpedge.LimiterConfig{Rate: 1e9})
	addrs := make([]netip.Addr, 20_000)
	for i := range addrs {
		addrs[i] = netip.MustParseAddr(fmt.Sprintf("100.64.%d.%d", i>>8, i&0xff))
	}
	b.Run("Allow/one-client", func(b *testing.B) {
		for b.Loop() {
			l.Allow(addrs[0])
		}
	})
	b.Run("Allow/table-full-evicting", func(b *testing.B) {
		i := 0
		for b.Loop() {
			l.Allow(addrs[i%len(addrs)])
			i++
		}
	})
	tokens := httpedge.NewTokens("admin-0123456789abcdef0123456789abcdef", "reader-0123456789abcdef0123456789abcdef")
	r.Header.Set("Authorization", "Bearer reader-0123456789abcdef0123456789abcdef")
	b.Run("Authorize", func(b *testing.B) {
		for b.Loop() {
			tokens.Authorize(r)
		}
	})
}
