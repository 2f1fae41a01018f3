package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/kefu-io/kefu/internal/config"
)

// Need is a set of settings a role asked for needs. Lenient needs (those
// of `kefu all`, which starts without the integrations it lacks) are
// warnings when missing; the others failures, as the role would refuse to
// start.
type Need struct {
	Role    string
	Need    config.Need
	Lenient bool
}

// wechatToken is what 公众号后台 accepts as the callback Token: 3 to 32
// letters and digits.
var wechatToken = regexp.MustCompile(`^[A-Za-z0-9]{3,32}$`)

// minBearer is the shortest API token the doctor does not warn about.
const minBearer = 16

// ConfigCheck reports the configuration: loadErr (config.Load's error),
// the settings the roles need, KEFU_PUBLIC_URL's shape and the tokens'
// lengths.
func ConfigCheck(cfg config.Config, loadErr error, needs []Need) Check {
	return Check{Name: "configuration", Run: func(context.Context) []Result {
		if loadErr != nil {
			name, _, _ := strings.Cut(loadErr.Error(), ":")
			fix := "correct " + name + " (`kefu help` lists every setting and its form)"
			if !strings.HasPrefix(name, "KEFU_") {
				fix = "correct the setting the message names (`kefu help` lists every setting)"
			}
			return []Result{{Status: Fail, Found: "the configuration does not load: " + loadErr.Error(), Fix: fix}}
		}
		var rs []Result
		rs = append(rs, needResults(cfg, needs)...)
		rs = append(rs, publicURLResult(cfg.PublicURL))
		return append(rs, tokenResults(cfg)...)
	}}
}

func needResults(cfg config.Config, needs []Need) []Result {
	var rs []Result
	seen := map[string]bool{}
	missing := 0
	for _, n := range needs {
		err := cfg.Check(n.Role, n.Need)
		var me *config.MissingError
		if !errors.As(err, &me) {
			continue
		}
		key := me.Var + "\x00" + n.Need.Integration
		if seen[key] {
			continue
		}
		seen[key] = true
		missing++
		var unset []string
		for _, v := range n.Need.Vars {
			if cfg.Check(n.Role, config.Need{Vars: []string{v}}) != nil {
				unset = append(unset, v)
			}
		}
		r := Result{Name: "settings: " + n.Need.Integration, Status: Fail, Found: err.Error(), Fix: "set " + strings.Join(unset, " and ")}
		if n.Lenient {
			r.Status = Warn
			r.Found = fmt.Sprintf("%s is not set: `kefu %s` runs without %s", me.Var, n.Role, n.Need.Integration)
		}
		rs = append(rs, r)
	}
	if missing == 0 {
		roles := map[string]bool{}
		var names []string
		for _, n := range needs {
			if !roles[n.Role] {
				roles[n.Role] = true
				names = append(names, n.Role)
			}
		}
		rs = append(rs, Result{Name: "settings", Status: OK, Found: "everything " + strings.Join(names, ", ") + " needs is set"})
	}
	return rs
}

// publicURLResult checks KEFU_PUBLIC_URL: the base WeChat's callback URL
// and the feedback links are built on.
func publicURLResult(v string) Result {
	r := Result{Name: "KEFU_PUBLIC_URL"}
	if v == "" {
		r.Status, r.Found = Skip, "not set (feedback links go straight to Tucao; the callback URL cannot be tested)"
		return r
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		r.Status, r.Found = Fail, fmt.Sprintf("%q is not an absolute http(s) URL", v)
		r.Fix = "set KEFU_PUBLIC_URL to the address WeChat reaches kefu at, e.g. https://kefu.example.com"
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		r.Status, r.Found = Fail, fmt.Sprintf("%q has a query, fragment or user", redact(u))
		r.Fix = "set KEFU_PUBLIC_URL to a base URL alone, e.g. https://kefu.example.com"
	case strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/wechat/callback"):
		r.Status, r.Found = Fail, fmt.Sprintf("%q ends in /wechat/callback", v)
		r.Fix = "set KEFU_PUBLIC_URL to the base URL without /wechat/callback; kefu adds the path"
	case u.Port() != "" && u.Port() != "80" && u.Port() != "443" && !isLocal(u.Hostname()):
		r.Status, r.Found = Warn, fmt.Sprintf("%s uses port %s; WeChat calls servers on 80 and 443 only", v, u.Port())
		r.Fix = "publish kefu on port 443 (or 80) behind the proxy and set KEFU_PUBLIC_URL without a port"
	case u.Scheme == "http" && !isLocal(u.Hostname()):
		r.Status, r.Found = Warn, fmt.Sprintf("%s is plain http: callbacks and feedback links travel unencrypted", v)
		r.Fix = "terminate TLS in front of kefu and set KEFU_PUBLIC_URL to https://…"
	default:
		r.Status, r.Found = OK, v
	}
	return r
}

func isLocal(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User("…")
	}
	c.RawQuery, c.Fragment = "", ""
	return c.String()
}

// tokenResults checks the shape of the callback token and AES key and the
// length of the API tokens (docs/security.md).
func tokenResults(cfg config.Config) []Result {
	var rs []Result
	if t := cfg.WeChatToken.Value(); t != "" {
		if !wechatToken.MatchString(t) {
			rs = append(rs, Result{Name: "KEFU_WECHAT_TOKEN", Status: Fail,
				Found: fmt.Sprintf("%d characters, or not letters and digits only: 公众号后台 accepts 3 to 32 letters and digits", len(t)),
				Fix:   "set KEFU_WECHAT_TOKEN to the Token of 公众号后台 → 设置与开发 → 基本配置 → 服务器配置 (3–32 letters and digits)"})
		} else {
			rs = append(rs, Result{Name: "KEFU_WECHAT_TOKEN", Status: OK, Found: fmt.Sprintf("%d characters", len(t))})
		}
	}
	if k := cfg.WeChatAESKey.Value(); k != "" && !regexp.MustCompile(`^[A-Za-z0-9]{43}$`).MatchString(k) {
		rs = append(rs, Result{Name: "KEFU_WECHAT_AES_KEY", Status: Fail, Found: "not 43 letters and digits",
			Fix: "set KEFU_WECHAT_AES_KEY to the EncodingAESKey of 公众号后台 → 基本配置 → 服务器配置"})
	}
	for _, tok := range []struct {
		name  string
		value string
	}{{"KEFU_ADMIN_TOKEN", cfg.AdminToken.Value()}, {"KEFU_API_TOKEN", cfg.APIToken.Value()}} {
		if tok.value != "" && len(tok.value) < minBearer {
			rs = append(rs, Result{Name: tok.name, Status: Warn,
				Found: fmt.Sprintf("%d characters: a short bearer token can be guessed", len(tok.value)),
				Fix:   fmt.Sprintf("set %s to at least %d random characters, e.g. `openssl rand -hex 32`", tok.name, minBearer)})
		}
	}
	if a := cfg.AdminToken.Value(); a != "" && a == cfg.APIToken.Value() {
		rs = append(rs, Result{Name: "KEFU_API_TOKEN", Status: Warn, Found: "the same as KEFU_ADMIN_TOKEN: read-only holders may change everything",
			Fix: "give KEFU_API_TOKEN a value of its own, or unset it"})
	}
	return rs
}
