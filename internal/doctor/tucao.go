package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/tucao"
)

// Clock skew against Tucao.
const (
	// TucaoSkewWarn is the skew worth a warning: callbacks and links are
	// checked against the clock too, and it grows.
	TucaoSkewWarn = clockWarn
	// TucaoWindow is how far from Tucao's clock a request's Timestamp may
	// be (txc.qq.com: 300 s; its seed says "a certain time range"). The
	// client corrects its own timestamps, but a host this far off signs
	// every first request stale and fails WeChat's callback window as well.
	TucaoWindow = 300 * time.Second
)

// TucaoCheck sends one signed request for the newest post, as the poller
// does, explains a refusal, and judges the host's clock by the skew the
// client measured from the answer's Date header.
func TucaoCheck(cfg config.Config, hc *http.Client) Check {
	return Check{Name: "Tucao", Run: func(ctx context.Context) []Result {
		if cfg.TucaoProductID == "" || cfg.TucaoSecret == "" {
			return []Result{{Status: Skip, Found: "KEFU_TUCAO_PRODUCT_ID and KEFU_TUCAO_SECRET are not both set"}}
		}
		c, err := tucao.New(tucao.Config{BaseURL: cfg.TucaoAPIBase, ProductID: cfg.TucaoProductID, Secret: cfg.TucaoSecret.Value(),
			HTTPClient: hc, MaxRetries: -1})
		if err != nil {
			return []Result{{Status: Fail, Found: err.Error(), Fix: "set KEFU_TUCAO_PRODUCT_ID to the product's numeric id and KEFU_TUCAO_API_BASE to an https URL"}}
		}
		page, err := c.ListPosts(ctx, tucao.ListOptions{Count: 1})
		skew := c.ClockSkew()
		if err != nil {
			return []Result{tucaoError(cfg, err, skew)}
		}
		rs := []Result{{Status: OK, Found: fmt.Sprintf("product %s answers (%d posts on the first page)", cfg.TucaoProductID, len(page.Posts))}}
		// ClockSkew is server minus local; the report says local vs server.
		rs = append(rs, withName(skewResult("local clock is", -skew, TucaoSkewWarn, TucaoWindow, "Tucao"), "clock vs Tucao"))
		return rs
	}}
}

func withName(r Result, name string) Result { r.Name = name; return r }

func tucaoError(cfg config.Config, err error, skew time.Duration) Result {
	r := Result{Status: Fail, Found: "Tucao refused the request: " + err.Error()}
	var apiErr *tucao.APIError
	if !errors.As(err, &apiErr) {
		base := cfg.TucaoAPIBase
		if base == "" {
			base = tucao.DefaultBaseURL
		}
		r.Found = fmt.Sprintf("cannot reach Tucao at %s: %v", base, err)
		r.Fix = "let this host reach " + base + " over HTTPS (firewall, proxy, DNS), or correct KEFU_TUCAO_API_BASE"
		return r
	}
	switch {
	case apiErr.Status == tucao.StatusBadSignature || apiErr.Status == tucao.StatusMissingAuth:
		r.Fix = "KEFU_TUCAO_SECRET is not the product's key: copy private_key (密钥) from 兔小巢 管理后台 → 产品设置"
	case apiErr.Status == tucao.StatusStaleTimestamp:
		r.Found = fmt.Sprintf("Tucao refused the timestamp: the local clock is %s off", skew.Abs().Round(time.Second))
		r.Fix = "synchronise the host's clock (NTP: timedatectl set-ntp true, or chrony)"
	case apiErr.Status == tucao.StatusUnknownProduct || apiErr.HTTPStatus == http.StatusNotFound:
		r.Fix = "KEFU_TUCAO_PRODUCT_ID is not a product of this key: copy the 产品 ID from 兔小巢 管理后台 → 产品设置"
	case apiErr.RateLimited():
		r.Status = Warn
		r.Fix = "the product's 100 requests a minute are used up (a poller or backfill runs): run `kefu doctor` again in a minute"
	case apiErr.HTTPStatus >= 500:
		r.Status = Warn
		r.Fix = "Tucao has trouble of its own: run `kefu doctor` again later"
	default:
		r.Fix = "check KEFU_TUCAO_API_BASE points at Tucao's API (default https://txc.qq.com)"
	}
	return r
}
