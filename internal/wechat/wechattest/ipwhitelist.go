package wechattest

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
)

// CodeIPNotWhitelisted is WeChat's answer to an API call from an address
// that is not on the account's IP whitelist (IP白名单), which WeChat
// requires for the token APIs and every call made with their tokens.
const CodeIPNotWhitelisted = 40164

// SetIPWhitelist restricts the API to callers from ips, as the account's
// IP白名单 in 公众号后台 does: every call from another address is answered
// 40164, the errmsg naming the caller's address the way WeChat's does
// ("invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist").
// No addresses lift the restriction (the default). The /_control/
// counterpart is POST /_control/ipwhitelist {"ip_list": [...]}.
func (s *Server) SetIPWhitelist(ips []string) error {
	var list []netip.Addr
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Errorf("set IP whitelist: %q is not an IP address", ip)
		}
		list = append(list, a.Unmap())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ipWhitelist = list
	return nil
}

// checkIPWhitelist answers 40164 when r comes from an address the
// whitelist leaves out.
func (s *Server) checkIPWhitelist(r *http.Request) *APIError {
	s.mu.Lock()
	list := s.ipWhitelist
	s.mu.Unlock()
	if len(list) == 0 {
		return nil
	}
	ip := clientIP(r)
	if caller, err := netip.ParseAddr(ip); err == nil {
		for _, a := range list {
			if a == caller {
				return nil
			}
		}
	}
	return ipNotWhitelisted(ip)
}

// clientIP is the TCP peer of r, IPv4-mapped addresses unmapped.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return host
}

// ipNotWhitelisted is WeChat's 40164 for the caller ip.
func ipNotWhitelisted(ip string) *APIError {
	v6 := ip
	if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
		v6 = "::ffff:" + ip
	}
	return &APIError{Code: CodeIPNotWhitelisted, Msg: fmt.Sprintf("invalid ip %s ipv6 %s, not in whitelist", ip, v6)}
}

func (s *Server) ipWhitelistControlRoutes() {
	s.mux.HandleFunc("POST /_control/ipwhitelist", control(func(_ *http.Request, req struct {
		IPList []string `json:"ip_list"`
	}) (any, error) {
		return nil, s.SetIPWhitelist(req.IPList)
	}))
}
