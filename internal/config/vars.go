package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kefu-io/kefu/pkg/events"
)

// Var is one row of the configuration table: one environment variable,
// or one family of them (a Name ending in <KIND>, one variable per member).
type Var struct {
	Name    string
	Default string // what Load takes when the variable is unset; "" is unset
	Help    string
	Type    string // the form of the value: string, secret, bool, duration, URL, list…
	Group   string // the part of kefu that reads it
	// Members of a family: the <KIND> of Name, each in upper case, names
	// one variable.
	Members []string
	// CLI marks a variable of the command-line tools (kefu kf): roles
	// neither read it nor take a flag for it.
	CLI bool
	p   parser
}

// Names are the environment variables of the row: its Name, or each
// member's for a family.
func (v Var) Names() []string {
	if v.Members == nil {
		return []string{v.Name}
	}
	names := make([]string, len(v.Members))
	for i, m := range v.Members {
		names[i] = v.prefix() + strings.ToUpper(m)
	}
	return names
}

// Flag reports whether roles take the row as a flag (KEFU_HTTP_ADDR is
// --http-addr); families and the command-line tools' variables are not.
func (v Var) Flag() bool { return v.Members == nil && !v.CLI }

func (v Var) prefix() string { return strings.TrimSuffix(v.Name, "<KIND>") }

// apply sets name (the row's Name or one member's) to val; an error names
// the variable, the problem and the form wanted, never a secret's value.
func (v Var) apply(c *Config, name, val string) error {
	var err error
	if v.Members != nil {
		err = v.p.setKind(c, strings.ToLower(strings.TrimPrefix(name, v.prefix())), val)
	} else {
		err = v.p.set(c, val)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Lookup returns the row of a variable, a family's member included.
func Lookup(name string) (Var, bool) {
	for _, v := range Vars {
		for _, n := range v.Names() {
			if n == name {
				return v, true
			}
		}
	}
	return Var{}, false
}

// The groups: which part of kefu reads a variable.
const (
	groupBus       = "NATS bus"
	groupProcess   = "every role"
	groupHTTP      = "HTTP server"
	groupIngest    = "ingest"
	groupWeChat    = "WeChat API"
	groupTucao     = "Tucao"
	groupEstimator = "estimator"
	groupQueue     = "queue care"
	groupFeedback  = "feedback"
	groupNotifier  = "notifier"
	groupKf        = "kefu kf"
)

// parser turns a value into typed fields of Config.
type parser struct {
	typ     string
	set     func(*Config, string) error
	setKind func(c *Config, kind, v string) error // a family's
	members []string
	cli     bool
}

func custom(typ string, set func(*Config, string) error) parser { return parser{typ: typ, set: set} }

func str(p func(*Config) *string) parser {
	return parser{typ: "string", set: func(c *Config, v string) error { *p(c) = v; return nil }}
}

func link(p func(*Config) *string) parser {
	return parser{typ: "URL", set: func(c *Config, v string) error { *p(c) = v; return nil }}
}

func secret(p func(*Config) *Secret) parser {
	return parser{typ: "secret", set: func(c *Config, v string) error { *p(c) = Secret(v); return nil }}
}

func boolean(p func(*Config) *bool) parser {
	return parser{typ: "bool", set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*p(c) = b
		return nil
	}}
}

func duration(p func(*Config) *time.Duration) parser {
	return parser{typ: "duration", set: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 30s or 2h, got %q", v)
		}
		*p(c) = d
		return nil
	}}
}

// list splits a comma-separated value, dropping blanks.
func list(p func(*Config) *[]string) parser {
	return parser{typ: "list", set: func(c *Config, v string) error {
		*p(c) = nil
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*p(c) = append(*p(c), item)
			}
		}
		return nil
	}}
}

// cliOnly is a variable the command-line tools read themselves.
func cliOnly(typ string) parser { return parser{typ: typ, cli: true} }

// row is one line of the table below.
type row struct {
	group, name, def, help string
	p                      parser
}

func table(rows []row) []Var {
	vars := make([]Var, len(rows))
	for i, r := range rows {
		vars[i] = Var{Name: r.name, Default: r.def, Help: r.help, Type: r.p.typ, Group: r.group, Members: r.p.members, CLI: r.p.cli, p: r.p}
	}
	return vars
}

// notifyKinds are the messages the notifier sends, each with its
// KEFU_NOTIFY_TEMPLATE_<KIND>.
var notifyKinds = []string{events.NotifySessionCreated, events.NotifySessionSwitched, events.NotifySessionClosed, events.NotifyWaitEstimated}

// Vars is the configuration table: every KEFU_* variable kefu reads, in the
// order `kefu help` prints them. Load, the roles' flags, `kefu help` and
// the deploy tests all read it.
var Vars = table([]row{
	{groupBus, "KEFU_NATS_URL", "", "external NATS server(s), comma-separated; unset: embedded server", custom("list of URLs", func(c *Config, v string) error {
		c.NATSURLs = nil
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				if _, err := url.Parse(u); err != nil {
					// The URL may carry user:password; name only its position.
					return fmt.Errorf("URL number %d is not a valid URL", len(c.NATSURLs)+1)
				}
				c.NATSURLs = append(c.NATSURLs, u)
			}
		}
		return nil
	})},
	{groupBus, "KEFU_NATS_LISTEN", "127.0.0.1:4222", "embedded server's client address", str(func(c *Config) *string { return &c.NATSListen })},
	{groupBus, "KEFU_NATS_CREDS", "", "NATS credentials file", str(func(c *Config) *string { return &c.NATSCreds })},
	{groupBus, "KEFU_NATS_USER", "", "NATS user; with no KEFU_NATS_URL the embedded server requires it (with KEFU_NATS_PASSWORD)", str(func(c *Config) *string { return &c.NATSUser })},
	{groupBus, "KEFU_NATS_PASSWORD", "", "password of KEFU_NATS_USER", secret(func(c *Config) *Secret { return &c.NATSPassword })},
	{groupBus, "KEFU_NATS_NKEY_SEED", "", "NATS nkey seed (SU…); with no KEFU_NATS_URL the embedded server requires its public key", secret(func(c *Config) *Secret { return &c.NATSNKeySeed })},
	{groupBus, "KEFU_NATS_REPLICAS", "1", "replicas of streams and KV buckets (3 in a cluster)", custom("int, 1–5", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			return fmt.Errorf("want 1 to 5, got %q", v)
		}
		c.NATSReplicas = n
		return nil
	})},
	{groupProcess, "KEFU_DATA_DIR", "./kefu-data", "embedded JetStream store and SQLite file", str(func(c *Config) *string { return &c.DataDir })},
	{groupProcess, "KEFU_HTTP_ADDR", ":8080", "HTTP listen address", str(func(c *Config) *string { return &c.HTTPAddr })},
	{groupProcess, "KEFU_METRICS_ADDR", "", "separate listen address for /metrics (unset: served on KEFU_HTTP_ADDR)", str(func(c *Config) *string { return &c.MetricsAddr })},
	{groupProcess, "KEFU_LOG_FORMAT", "", "json or console; unset: json, or console on a terminal", custom("enum", func(c *Config, v string) error {
		if v != "json" && v != "console" {
			return fmt.Errorf("want json or console, got %q", v)
		}
		c.LogFormat = v
		return nil
	})},
	{groupProcess, "KEFU_LOG_LEVEL", "info", "debug, info, warn or error", custom("enum", func(c *Config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("want debug, info, warn or error, got %q", v)
	})},
	{groupBus, "KEFU_STREAM_MAX_AGE", "720h", "retention of the event streams (replay window)", duration(func(c *Config) *time.Duration { return &c.StreamMaxAge })},
	{groupBus, "KEFU_NATS_DOWN_LIMIT", "2m", "how long the bus may be unusable before /healthz fails, so the orchestrator restarts the process (/readyz fails at once)", duration(func(c *Config) *time.Duration { return &c.NATSDownLimit })},
	{groupProcess, "KEFU_SHUTDOWN_GRACE", "25s", "time from SIGTERM to exit: readiness off, HTTP drained, consumers drained, leases released (keep below the orchestrator's grace period)", duration(func(c *Config) *time.Duration { return &c.ShutdownGrace })},
	{groupProcess, "KEFU_RETRY_MAX_BACKOFF", "2m", "longest wait between two attempts of a message whose dependency (database, WeChat, NATS) is down; such messages are retried until it is back", duration(func(c *Config) *time.Duration { return &c.RetryMaxBackoff })},
	{groupIngest, "KEFU_INGEST_STORE_FORWARD", "false", "ingest keeps callbacks in a local JetStream (a leaf node) while the NATS cluster is unreachable and forwards them when it is back", boolean(func(c *Config) *bool { return &c.IngestStoreForward })},
	{groupIngest, "KEFU_INGEST_SPOOL_MAX_BYTES", "1073741824", "largest size of ingest's local store-and-forward stream in bytes; when full, callbacks are answered 503", custom("bytes, ≥ 1 MiB", func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1<<20 {
			return fmt.Errorf("want a number of bytes of at least 1048576, got %q", v)
		}
		c.IngestSpoolBytes = n
		return nil
	})},
	{groupWeChat, "KEFU_WECHAT_APPID", "", "official account appid", str(func(c *Config) *string { return &c.WeChatAppID })},
	{groupWeChat, "KEFU_WECHAT_SECRET", "", "official account secret", secret(func(c *Config) *Secret { return &c.WeChatSecret })},
	{groupIngest, "KEFU_WECHAT_TOKEN", "", "callback token", secret(func(c *Config) *Secret { return &c.WeChatToken })},
	{groupIngest, "KEFU_WECHAT_AES_KEY", "", "43-character EncodingAESKey; set: compatible and safe modes accepted", custom("secret, 43 characters", func(c *Config, v string) error {
		if v != "" && len(v) != 43 {
			return fmt.Errorf("want 43 characters, got %d", len(v))
		}
		c.WeChatAESKey = Secret(v)
		return nil
	})},
	{groupWeChat, "KEFU_WECHAT_API_BASE", "https://api.weixin.qq.com", "WeChat API base URL", str(func(c *Config) *string { return &c.WeChatAPIBase })},
	{groupIngest, "KEFU_WECHAT_TRANSFER", "true", "answer customer messages with transfer_customer_service so they enter the 多客服 queue", boolean(func(c *Config) *bool { return &c.WeChatTransfer })},
	{groupIngest, "KEFU_KF_CHOOSE_KEYWORDS", "", "comma-separated messages (e.g. 选择客服,人工) answered with a numbered menu of the online agents (or groups) to choose from; unset or off: no menu", custom("list, or off", func(c *Config, v string) error {
		c.ChooseKeywords = nil
		if v = strings.TrimSpace(v); v == "" || v == "off" {
			return nil
		}
		for _, k := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '，' }) {
			k = strings.TrimSpace(k)
			if k == "" {
				continue
			}
			if utf8.RuneCountInString(k) > 32 {
				return fmt.Errorf("keyword %q is longer than 32 characters", k)
			}
			if _, err := strconv.Atoi(k); err == nil {
				return fmt.Errorf("keyword %q is a number, which answers the menu", k)
			}
			c.ChooseKeywords = append(c.ChooseKeywords, k)
		}
		if len(c.ChooseKeywords) == 0 || len(c.ChooseKeywords) > 20 {
			return fmt.Errorf("want 1–20 keywords, or off, got %q", v)
		}
		return nil
	})},
	{groupIngest, "KEFU_WECHAT_ALLOW_PLAINTEXT", "false", "with KEFU_WECHAT_AES_KEY set, still accept plaintext callbacks signed by signature alone (only while switching the account from plain mode)", boolean(func(c *Config) *bool { return &c.WeChatAllowPlaintext })},
	{groupIngest, "KEFU_WECHAT_CALLBACK_WINDOW", "5m", "how far a callback's timestamp may lie from now; older or newer callbacks are refused (at most 10m)", custom("duration, 30s–10m", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 30*time.Second || d > MaxCallbackWindow {
			return fmt.Errorf("want a duration from 30s to %s, got %q", MaxCallbackWindow, v)
		}
		c.CallbackWindow = d
		return nil
	})},
	{groupIngest, "KEFU_WECHAT_IP_ALLOWLIST", "false", "accept callbacks only from WeChat's callback IPs (getcallbackip, refreshed in the background; needs KEFU_WECHAT_SECRET)", boolean(func(c *Config) *bool { return &c.WeChatIPAllowlist })},
	{groupHTTP, "KEFU_TRUSTED_PROXIES", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (IP allow-list, rate limit)", custom("list of CIDRs", func(c *Config, v string) error {
		c.TrustedProxies = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			prefix, err := netip.ParsePrefix(p)
			if err != nil {
				addr, aerr := netip.ParseAddr(p)
				if aerr != nil {
					return fmt.Errorf("want CIDRs such as 10.0.0.0/8, got %q", p)
				}
				prefix = netip.PrefixFrom(addr, addr.BitLen())
			}
			c.TrustedProxies = append(c.TrustedProxies, prefix.Masked())
		}
		return nil
	})},
	{groupHTTP, "KEFU_PUBLIC_RATE_LIMIT", "100", "requests per second one client may make to the public paths (burst twice that); 0: no limit", custom("float, ≥ 0", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f != f {
			return fmt.Errorf("want a number of requests per second ≥ 0, got %q", v)
		}
		c.PublicRateLimit = f
		return nil
	})},
	{groupTucao, "KEFU_TUCAO_PRODUCT_ID", "", "Tucao product id", str(func(c *Config) *string { return &c.TucaoProductID })},
	{groupTucao, "KEFU_TUCAO_SECRET", "", "Tucao private key", secret(func(c *Config) *Secret { return &c.TucaoSecret })},
	{groupTucao, "KEFU_TUCAO_API_BASE", "https://txc.qq.com", "Tucao base URL", str(func(c *Config) *string { return &c.TucaoAPIBase })},
	{groupTucao, "KEFU_TUCAO_POLL_INTERVAL", "60s", "Tucao poll period", duration(func(c *Config) *time.Duration { return &c.TucaoPollInterval })},
	{groupIngest, "KEFU_TUCAO_WEBHOOK_SECRET", "", "secret path segment: the Tucao webhook is served at /tucao/webhook/<secret> only", custom("secret, ≥ 16 of [A-Za-z0-9_-]", func(c *Config, v string) error {
		for _, r := range v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("want letters, digits, - and _ only")
			}
		}
		if v != "" && len(v) < 16 {
			return fmt.Errorf("want at least 16 characters, got %d", len(v))
		}
		c.TucaoWebhookSecret = Secret(v)
		return nil
	})},
	{groupTucao, "KEFU_TUCAO_RESCAN_WINDOW", "168h", "posts created within this long are re-read (a pass spread over polls) so replies and changes are seen", duration(func(c *Config) *time.Duration { return &c.TucaoRescanWindow })},
	{groupEstimator, "KEFU_QUEUE_POLL_INTERVAL", "15s", "多客服 queue snapshot period", duration(func(c *Config) *time.Duration { return &c.QueuePollInterval })},
	{groupFeedback, "KEFU_FEEDBACK_DSN", "", "postgres://… for PostgreSQL; unset: SQLite in KEFU_DATA_DIR", secret(func(c *Config) *Secret { return &c.FeedbackDSN })},
	{groupHTTP, "KEFU_ADMIN_TOKEN", "", "bearer token for every /api/… request, any method (the admin API's changes need it)", secret(func(c *Config) *Secret { return &c.AdminToken })},
	{groupHTTP, "KEFU_API_TOKEN", "", "read-only bearer token for GET /api/… (queue, customers, feedback); with neither token /api/ is not served", secret(func(c *Config) *Secret { return &c.APIToken })},
	{groupQueue, "KEFU_QUEUE_LEAVE_PHRASES", "不等了,取消排队,退出排队", "comma-separated messages that take a waiting customer out of the queue", custom("list", func(c *Config, v string) error {
		c.LeavePhrases = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.LeavePhrases = append(c.LeavePhrases, p)
			}
		}
		if len(c.LeavePhrases) == 0 {
			return fmt.Errorf("want at least one phrase, got %q", v)
		}
		return nil
	})},
	{groupQueue, "KEFU_QUEUE_STALE_AFTER", "30m", "a served session with no activity for this long is closed with a goodbye", duration(func(c *Config) *time.Duration { return &c.StaleAfter })},
	{groupQueue, "KEFU_QUEUE_STALE_DRY_RUN", "false", "only report stale sessions (GET /api/kf/stale), close nothing", boolean(func(c *Config) *bool { return &c.StaleDryRun })},
	{groupQueue, "KEFU_QUEUE_RECONCILE_PER_MINUTE", "60", "getsession calls per minute that reconcile customers' states; negative: off", custom("int", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		c.ReconcileCallsPerMinute = n
		return nil
	})},
	{groupNotifier, "KEFU_PUBLIC_URL", "", "public base URL of kefu; feedback links point at its /feedback page (unset: plain Tucao link)", link(func(c *Config) *string { return &c.PublicURL })},
	{groupNotifier, "KEFU_FEEDBACK_LINK_SECRET", "", "key signing the openid in feedback links (unset: derived from KEFU_WECHAT_SECRET)", secret(func(c *Config) *Secret { return &c.FeedbackLinkSecret })},
	{groupNotifier, "KEFU_FEEDBACK_LINK_TTL", "168h", "how long a feedback link is valid", duration(func(c *Config) *time.Duration { return &c.FeedbackLinkTTL })},
	{groupNotifier, "KEFU_FEEDBACK_NICKNAME", "微信用户", "nickname shown on Tucao for customers", str(func(c *Config) *string { return &c.FeedbackNickname })},
	{groupNotifier, "KEFU_FEEDBACK_AVATAR_URL", "", "https avatar shown on Tucao for customers (unset: KEFU_PUBLIC_URL's /feedback/avatar.png)", link(func(c *Config) *string { return &c.FeedbackAvatarURL })},
	{groupNotifier, "KEFU_NOTIFY_RATE_LIMIT", "100", "customer messages per second (off: no limit)", custom("float, or off", func(c *Config, v string) error {
		switch v = strings.TrimSpace(v); v {
		case "":
			return nil
		case "off", "0":
			c.NotifyRateLimit = -1
			return nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("want messages per second or off, got %q", v)
		}
		c.NotifyRateLimit = f
		return nil
	})},
	{groupNotifier, "KEFU_NOTIFY_WAIT_MIN_INTERVAL", "3m", "least time between two wait messages to one customer", duration(func(c *Config) *time.Duration { return &c.NotifyWaitMinInterval })},
	{groupNotifier, "KEFU_NOTIFY_DISABLE", "", "comma-separated message kinds not sent (" + strings.Join(notifyKinds, ", ") + ")", list(func(c *Config) *[]string { return &c.NotifyDisable })},
	{groupNotifier, "KEFU_NOTIFY_TEMPLATES", "", "JSON file of message templates ({\"session_created\": \"…\", …})", str(func(c *Config) *string { return &c.NotifyTemplates })},
	{groupNotifier, "KEFU_NOTIFY_TEMPLATE_<KIND>", "", "the template of one kind, over the file's (KIND: " + strings.ToUpper(strings.Join(notifyKinds, ", ")) + ")", parser{typ: "string", members: notifyKinds,
		setKind: func(c *Config, kind, v string) error {
			if c.NotifyTemplate == nil {
				c.NotifyTemplate = map[string]string{}
			}
			c.NotifyTemplate[kind] = v
			return nil
		}}},
	{groupNotifier, "KEFU_NOTIFY_SEND_AS_AGENT", "false", "send session messages as the serving agent (true/false)", boolean(func(c *Config) *bool { return &c.NotifySendAsAgent })},
	{groupKf, "KEFU_SERVER", "", "kefu kf: the server whose admin API to use (as --server; unset: direct mode)", cliOnly("URL")},
	{groupKf, "KEFU_SERVER_TIMEOUT", "15s", "kefu kf --server: how long one request may take", cliOnly("duration, 1ms–1h")},
})
