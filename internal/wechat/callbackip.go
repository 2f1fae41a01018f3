package wechat

import (
	"context"
	"fmt"
)

// MethodGetCallbackIP names cgi-bin/getcallbackip in metrics and APIError.Method.
const MethodGetCallbackIP = "getcallbackip"

// maxCallbackIPs bounds the list kept from one answer: WeChat's has a few
// hundred entries, and a list this long is a broken answer, not a policy.
const maxCallbackIPs = 10000

// GetCallbackIP returns the addresses WeChat's servers send callbacks from
// (cgi-bin/getcallbackip): entries are single addresses ("101.226.62.77")
// or CIDR blocks ("101.226.103.0/25"), as WeChat lists them. It is a read
// and is retried like one.
func (c *Client) GetCallbackIP(ctx context.Context) ([]string, error) {
	var out struct {
		IPList []string `json:"ip_list"`
	}
	if err := c.get(ctx, MethodGetCallbackIP, "cgi-bin/getcallbackip", nil, &out); err != nil {
		return nil, err
	}
	if len(out.IPList) == 0 {
		// An empty list would lock WeChat itself out; treat it as a bad
		// answer so the caller keeps the list it has.
		return nil, fmt.Errorf("wechat %s: %w: empty ip_list", MethodGetCallbackIP, ErrMalformedResponse)
	}
	if len(out.IPList) > maxCallbackIPs {
		return nil, fmt.Errorf("wechat %s: %w: %d entries", MethodGetCallbackIP, ErrMalformedResponse, len(out.IPList))
	}
	return out.IPList, nil
}
