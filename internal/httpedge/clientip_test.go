package httpedge_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/httpedge"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48")}
	tests := []struct {
		name    string
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxy trusted: the peer, whatever the header says", "203.0.113.7:5555", []string{"1.2.3.4"}, nil, "203.0.113.7"},
		{"an untrusted peer's header is ignored", "203.0.113.7:5555", []string{"1.2.3.4"}, proxies, "203.0.113.7"},
		{"a trusted proxy names the client", "10.0.0.1:5555", []string{"198.51.100.9"}, proxies, "198.51.100.9"},
		{"a trusted proxy without the header is the client", "10.0.0.1:5555", nil, proxies, "10.0.0.1"},
		{"hops the client wrote left of the first untrusted one are ignored", "10.0.0.1:5555", []string{"6.6.6.6, 198.51.100.9, 10.0.0.2"}, proxies, "198.51.100.9"},
		{"several header lines are one list", "10.0.0.1:5555", []string{"6.6.6.6", "198.51.100.9", "10.0.0.2"}, proxies, "198.51.100.9"},
		{"every hop trusted: the left-most", "10.0.0.1:5555", []string{"10.0.0.3, 10.0.0.2"}, proxies, "10.0.0.3"},
		{"a hop that does not parse: the trusted hop to its right", "10.0.0.1:5555", []string{"198.51.100.9, garbage, 10.0.0.2"}, proxies, "10.0.0.2"},
		{"a hop with a port", "10.0.0.1:5555", []string{"198.51.100.9:4711"}, proxies, "198.51.100.9"},
		{"an IPv6 hop in brackets", "10.0.0.1:5555", []string{"[2001:db8:2::5]:443"}, proxies, "2001:db8:2::5"},
		{"an IPv6 peer in a trusted prefix", "[2001:db8:1::1]:5555", []string{"2001:db8:2::5"}, proxies, "2001:db8:2::5"},
		{"an IPv4-mapped peer counts as IPv4", "[::ffff:10.0.0.1]:5555", []string{"198.51.100.9"}, proxies, "198.51.100.9"},
		{"an overlong line is a stranger's padding: ignored", "10.0.0.1:5555", []string{strings.Repeat("1.1.1.1,", 400) + "198.51.100.9"}, proxies, "10.0.0.1"},
		{"at most 16 hops are read", "10.0.0.1:5555", []string{"198.51.100.9," + strings.Repeat("10.0.0.2,", 16) + "10.0.0.2"}, proxies, "10.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := httpedge.ClientIP(r, tt.trusted); got != netip.MustParseAddr(tt.want) {
				t.Errorf("ClientIP = %v, want %s", got, tt.want)
			}
		})
	}
}
