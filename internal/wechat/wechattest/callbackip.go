package wechattest

import (
	"net/http"
	"net/netip"
	"strings"
)

// DefaultCallbackIPs is the fake's initial getcallbackip list: a few of
// WeChat's published entries (an address and a CIDR block, the two forms
// the real list mixes) plus the loopback addresses the fake itself posts
// callbacks from, so that a receiver with the IP allow-list on accepts the
// fake's callbacks out of the box.
var DefaultCallbackIPs = []string{"101.226.62.77", "101.226.103.0/25", "183.3.234.0/24", "127.0.0.1", "::1"}

// SetCallbackIPs replaces the list cgi-bin/getcallbackip answers. Entries
// are addresses or CIDR blocks; a malformed one is refused.
func (s *Server) SetCallbackIPs(list []string) error {
	for _, e := range list {
		if !validIPEntry(e) {
			return errBadControlRequest("not an IP address or CIDR block: " + e)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callbackIPs = append([]string(nil), list...)
	return nil
}

// CallbackIPs returns the list cgi-bin/getcallbackip answers.
func (s *Server) CallbackIPs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.callbackIPs...)
}

func validIPEntry(e string) bool {
	if strings.Contains(e, "/") {
		_, err := netip.ParsePrefix(e)
		return err == nil
	}
	_, err := netip.ParseAddr(e)
	return err == nil
}

// handleCallbackIP answers cgi-bin/getcallbackip: {"ip_list": [...]}.
func (s *Server) handleCallbackIP(_ *http.Request, _ []byte) (any, *APIError) {
	return struct {
		IPList []string `json:"ip_list"`
	}{nonNil(s.CallbackIPs())}, nil
}
