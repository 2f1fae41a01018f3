// Package config reads kefu's configuration from the environment (every
// variable is listed in README.md, "Configuration", and by `kefu help`),
// fills defaults and says, in one line naming the variable, what a
// role lacks. Secrets are kept in a type that never prints its value.
package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxCallbackWindow is the widest freshness window of callbacks. It stays
// below the streams' de-duplication window (bus.DefaultDuplicateWindow is
// twice it and more), so a replayed callback is either inside the window and
// dropped as a duplicate, or outside it and refused.
const MaxCallbackWindow = 10 * time.Minute

// Secret is a string that prints as "***" in logs, errors and %v.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return `"***"` }

// MarshalText keeps secrets out of JSON and structured logs.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Value is the secret itself, for the one place that needs it.
func (s Secret) Value() string { return string(s) }

// Config is every setting of every role.
type Config struct {
	NATSURLs     []string      // KEFU_NATS_URL
	NATSListen   string        // KEFU_NATS_LISTEN
	NATSCreds    string        // KEFU_NATS_CREDS
	NATSReplicas int           // KEFU_NATS_REPLICAS
	NATSUser     string        // KEFU_NATS_USER
	NATSPassword Secret        // KEFU_NATS_PASSWORD
	NATSNKeySeed Secret        // KEFU_NATS_NKEY_SEED
	DataDir      string        // KEFU_DATA_DIR
	HTTPAddr     string        // KEFU_HTTP_ADDR
	MetricsAddr  string        // KEFU_METRICS_ADDR
	LogFormat    string        // KEFU_LOG_FORMAT; "": console on a terminal, else json
	LogLevel     string        // KEFU_LOG_LEVEL
	StreamMaxAge time.Duration // KEFU_STREAM_MAX_AGE

	// Staying up through outages (docs/operations.md).
	NATSDownLimit      time.Duration // KEFU_NATS_DOWN_LIMIT
	ShutdownGrace      time.Duration // KEFU_SHUTDOWN_GRACE
	RetryMaxBackoff    time.Duration // KEFU_RETRY_MAX_BACKOFF
	IngestStoreForward bool          // KEFU_INGEST_STORE_FORWARD
	IngestSpoolBytes   int64         // KEFU_INGEST_SPOOL_MAX_BYTES

	WeChatAppID    string // KEFU_WECHAT_APPID
	WeChatSecret   Secret // KEFU_WECHAT_SECRET
	WeChatToken    Secret // KEFU_WECHAT_TOKEN
	WeChatAESKey   Secret // KEFU_WECHAT_AES_KEY
	WeChatAPIBase  string // KEFU_WECHAT_API_BASE
	WeChatTransfer bool   // KEFU_WECHAT_TRANSFER
	// ChooseKeywords ask for the menu of agents; none: off.
	ChooseKeywords []string // KEFU_KF_CHOOSE_KEYWORDS

	// Callback hardening (docs/security.md).
	WeChatAllowPlaintext bool           // KEFU_WECHAT_ALLOW_PLAINTEXT
	CallbackWindow       time.Duration  // KEFU_WECHAT_CALLBACK_WINDOW
	WeChatIPAllowlist    bool           // KEFU_WECHAT_IP_ALLOWLIST
	TrustedProxies       []netip.Prefix // KEFU_TRUSTED_PROXIES
	PublicRateLimit      float64        // KEFU_PUBLIC_RATE_LIMIT

	TucaoProductID     string        // KEFU_TUCAO_PRODUCT_ID
	TucaoSecret        Secret        // KEFU_TUCAO_SECRET
	TucaoAPIBase       string        // KEFU_TUCAO_API_BASE
	TucaoPollInterval  time.Duration // KEFU_TUCAO_POLL_INTERVAL
	TucaoWebhookSecret Secret        // KEFU_TUCAO_WEBHOOK_SECRET
	TucaoRescanWindow  time.Duration // KEFU_TUCAO_RESCAN_WINDOW

	QueuePollInterval time.Duration // KEFU_QUEUE_POLL_INTERVAL
	FeedbackDSN       Secret        // KEFU_FEEDBACK_DSN
	AdminToken        Secret        // KEFU_ADMIN_TOKEN
	APIToken          Secret        // KEFU_API_TOKEN

	LeavePhrases            []string      // KEFU_QUEUE_LEAVE_PHRASES
	StaleAfter              time.Duration // KEFU_QUEUE_STALE_AFTER
	StaleDryRun             bool          // KEFU_QUEUE_STALE_DRY_RUN
	ReconcileCallsPerMinute int           // KEFU_QUEUE_RECONCILE_PER_MINUTE

	// Extra holds the settings a service reads itself (the notifier's),
	// so flags can override them too; values print as *** like secrets.
	Extra map[string]Secret
}

// Getenv returns a setting a service reads itself, as the flag or the
// environment gave it to Load; "" when unset.
func (c Config) Getenv(name string) string { return c.Extra[name].Value() }

// extra is a variable read by a service's own loader.
func extra(name string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if c.Extra == nil {
			c.Extra = map[string]Secret{}
		}
		c.Extra[name] = Secret(v)
		return nil
	}
}

// Var describes one environment variable.
type Var struct {
	Name, Default, Help string
	set                 func(*Config, string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func secret(p func(*Config) *Secret) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = Secret(v); return nil }
}

func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*p(c) = b
		return nil
	}
}

func duration(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 30s or 2h, got %q", v)
		}
		*p(c) = d
		return nil
	}
}

// Vars is the configuration table; README's table is generated from the same facts.
var Vars = []Var{
	{"KEFU_NATS_URL", "", "external NATS server(s), comma-separated; unset: embedded server", func(c *Config, v string) error {
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
	}},
	{"KEFU_NATS_LISTEN", "127.0.0.1:4222", "embedded server's client address", str(func(c *Config) *string { return &c.NATSListen })},
	{"KEFU_NATS_CREDS", "", "NATS credentials file", str(func(c *Config) *string { return &c.NATSCreds })},
	{"KEFU_NATS_USER", "", "NATS user; with no KEFU_NATS_URL the embedded server requires it (with KEFU_NATS_PASSWORD)", str(func(c *Config) *string { return &c.NATSUser })},
	{"KEFU_NATS_PASSWORD", "", "password of KEFU_NATS_USER", secret(func(c *Config) *Secret { return &c.NATSPassword })},
	{"KEFU_NATS_NKEY_SEED", "", "NATS nkey seed (SU…); with no KEFU_NATS_URL the embedded server requires its public key", secret(func(c *Config) *Secret { return &c.NATSNKeySeed })},
	{"KEFU_NATS_REPLICAS", "1", "replicas of streams and KV buckets (3 in a cluster)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			return fmt.Errorf("want 1 to 5, got %q", v)
		}
		c.NATSReplicas = n
		return nil
	}},
	{"KEFU_DATA_DIR", "./kefu-data", "embedded JetStream store and SQLite file", str(func(c *Config) *string { return &c.DataDir })},
	{"KEFU_HTTP_ADDR", ":8080", "HTTP listen address", str(func(c *Config) *string { return &c.HTTPAddr })},
	{"KEFU_METRICS_ADDR", "", "separate listen address for /metrics (unset: served on KEFU_HTTP_ADDR)", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"KEFU_LOG_FORMAT", "", "json or console; unset: json, or console on a terminal", func(c *Config, v string) error {
		if v != "json" && v != "console" {
			return fmt.Errorf("want json or console, got %q", v)
		}
		c.LogFormat = v
		return nil
	}},
	{"KEFU_LOG_LEVEL", "info", "debug, info, warn or error", func(c *Config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("want debug, info, warn or error, got %q", v)
	}},
	{"KEFU_STREAM_MAX_AGE", "720h", "retention of the event streams (replay window)", duration(func(c *Config) *time.Duration { return &c.StreamMaxAge })},
	{"KEFU_NATS_DOWN_LIMIT", "2m", "how long the bus may be unusable before /healthz fails, so the orchestrator restarts the process (/readyz fails at once)", duration(func(c *Config) *time.Duration { return &c.NATSDownLimit })},
	{"KEFU_SHUTDOWN_GRACE", "25s", "time from SIGTERM to exit: readiness off, HTTP drained, consumers drained, leases released (keep below the orchestrator's grace period)", duration(func(c *Config) *time.Duration { return &c.ShutdownGrace })},
	{"KEFU_RETRY_MAX_BACKOFF", "2m", "longest wait between two attempts of a message whose dependency (database, WeChat, NATS) is down; such messages are retried until it is back", duration(func(c *Config) *time.Duration { return &c.RetryMaxBackoff })},
	{"KEFU_INGEST_STORE_FORWARD", "false", "ingest keeps callbacks in a local JetStream (a leaf node) while the NATS cluster is unreachable and forwards them when it is back", boolean(func(c *Config) *bool { return &c.IngestStoreForward })},
	{"KEFU_INGEST_SPOOL_MAX_BYTES", "1073741824", "largest size of ingest's local store-and-forward stream in bytes; when full, callbacks are answered 503", func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1<<20 {
			return fmt.Errorf("want a number of bytes of at least 1048576, got %q", v)
		}
		c.IngestSpoolBytes = n
		return nil
	}},
	{"KEFU_WECHAT_APPID", "", "official account appid", str(func(c *Config) *string { return &c.WeChatAppID })},
	{"KEFU_WECHAT_SECRET", "", "official account secret", secret(func(c *Config) *Secret { return &c.WeChatSecret })},
	{"KEFU_WECHAT_TOKEN", "", "callback token", secret(func(c *Config) *Secret { return &c.WeChatToken })},
	{"KEFU_WECHAT_AES_KEY", "", "43-character EncodingAESKey; set: compatible and safe modes accepted", func(c *Config, v string) error {
		if v != "" && len(v) != 43 {
			return fmt.Errorf("want 43 characters, got %d", len(v))
		}
		c.WeChatAESKey = Secret(v)
		return nil
	}},
	{"KEFU_WECHAT_API_BASE", "https://api.weixin.qq.com", "WeChat API base URL", str(func(c *Config) *string { return &c.WeChatAPIBase })},
	{"KEFU_WECHAT_TRANSFER", "true", "answer customer messages with transfer_customer_service so they enter the 多客服 queue", boolean(func(c *Config) *bool { return &c.WeChatTransfer })},
	{"KEFU_KF_CHOOSE_KEYWORDS", "", "comma-separated messages (e.g. 选择客服,人工) answered with a numbered menu of the online agents (or groups) to choose from; unset or off: no menu", func(c *Config, v string) error {
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
	}},
	{"KEFU_WECHAT_ALLOW_PLAINTEXT", "false", "with KEFU_WECHAT_AES_KEY set, still accept plaintext callbacks signed by signature alone (only while switching the account from plain mode)", boolean(func(c *Config) *bool { return &c.WeChatAllowPlaintext })},
	{"KEFU_WECHAT_CALLBACK_WINDOW", "5m", "how far a callback's timestamp may lie from now; older or newer callbacks are refused (at most 10m)", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 30*time.Second || d > MaxCallbackWindow {
			return fmt.Errorf("want a duration from 30s to %s, got %q", MaxCallbackWindow, v)
		}
		c.CallbackWindow = d
		return nil
	}},
	{"KEFU_WECHAT_IP_ALLOWLIST", "false", "accept callbacks only from WeChat's callback IPs (getcallbackip, refreshed in the background; needs KEFU_WECHAT_SECRET)", boolean(func(c *Config) *bool { return &c.WeChatIPAllowlist })},
	{"KEFU_TRUSTED_PROXIES", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (IP allow-list, rate limit)", func(c *Config, v string) error {
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
	}},
	{"KEFU_PUBLIC_RATE_LIMIT", "100", "requests per second one client may make to the public paths (burst twice that); 0: no limit", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f != f {
			return fmt.Errorf("want a number of requests per second ≥ 0, got %q", v)
		}
		c.PublicRateLimit = f
		return nil
	}},
	{"KEFU_TUCAO_PRODUCT_ID", "", "Tucao product id", str(func(c *Config) *string { return &c.TucaoProductID })},
	{"KEFU_TUCAO_SECRET", "", "Tucao private key", secret(func(c *Config) *Secret { return &c.TucaoSecret })},
	{"KEFU_TUCAO_API_BASE", "https://txc.qq.com", "Tucao base URL", str(func(c *Config) *string { return &c.TucaoAPIBase })},
	{"KEFU_TUCAO_POLL_INTERVAL", "60s", "Tucao poll period", duration(func(c *Config) *time.Duration { return &c.TucaoPollInterval })},
	{"KEFU_TUCAO_WEBHOOK_SECRET", "", "secret path segment: the Tucao webhook is served at /tucao/webhook/<secret> only", func(c *Config, v string) error {
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
	}},
	{"KEFU_TUCAO_RESCAN_WINDOW", "168h", "posts created within this long are re-read (a pass spread over polls) so replies and changes are seen", duration(func(c *Config) *time.Duration { return &c.TucaoRescanWindow })},
	{"KEFU_QUEUE_POLL_INTERVAL", "15s", "多客服 queue snapshot period", duration(func(c *Config) *time.Duration { return &c.QueuePollInterval })},
	{"KEFU_FEEDBACK_DSN", "", "postgres://… for PostgreSQL; unset: SQLite in KEFU_DATA_DIR", secret(func(c *Config) *Secret { return &c.FeedbackDSN })},
	{"KEFU_ADMIN_TOKEN", "", "bearer token for every /api/… request, any method (the admin API's changes need it)", secret(func(c *Config) *Secret { return &c.AdminToken })},
	{"KEFU_API_TOKEN", "", "read-only bearer token for GET /api/… (queue, customers, feedback); with neither token /api/ is not served", secret(func(c *Config) *Secret { return &c.APIToken })},
	{"KEFU_QUEUE_LEAVE_PHRASES", "不等了,取消排队,退出排队", "comma-separated messages that take a waiting customer out of the queue", func(c *Config, v string) error {
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
	}},
	{"KEFU_QUEUE_STALE_AFTER", "30m", "a served session with no activity for this long is closed with a goodbye", duration(func(c *Config) *time.Duration { return &c.StaleAfter })},
	{"KEFU_QUEUE_STALE_DRY_RUN", "false", "only report stale sessions (GET /api/kf/stale), close nothing", boolean(func(c *Config) *bool { return &c.StaleDryRun })},
	{"KEFU_QUEUE_RECONCILE_PER_MINUTE", "60", "getsession calls per minute that reconcile customers' states; negative: off", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		c.ReconcileCallsPerMinute = n
		return nil
	}},
	{"KEFU_PUBLIC_URL", "", "public base URL of kefu; feedback links point at its /feedback page (unset: plain Tucao link)", extra("KEFU_PUBLIC_URL")},
	{"KEFU_FEEDBACK_LINK_SECRET", "", "key signing the openid in feedback links (unset: derived from KEFU_WECHAT_SECRET)", extra("KEFU_FEEDBACK_LINK_SECRET")},
	{"KEFU_FEEDBACK_LINK_TTL", "", "how long a feedback link is valid (notifier default)", extra("KEFU_FEEDBACK_LINK_TTL")},
	{"KEFU_FEEDBACK_NICKNAME", "", "nickname shown on Tucao for customers (notifier default 微信用户)", extra("KEFU_FEEDBACK_NICKNAME")},
	{"KEFU_FEEDBACK_AVATAR_URL", "", "https avatar shown on Tucao for customers", extra("KEFU_FEEDBACK_AVATAR_URL")},
	{"KEFU_NOTIFY_RATE_LIMIT", "", "customer messages per second (off: no limit)", extra("KEFU_NOTIFY_RATE_LIMIT")},
	{"KEFU_NOTIFY_WAIT_MIN_INTERVAL", "", "least time between two wait messages to one customer (default 3m)", extra("KEFU_NOTIFY_WAIT_MIN_INTERVAL")},
	{"KEFU_NOTIFY_DISABLE", "", "comma-separated message kinds not sent (session_created, session_switched, session_closed, wait_estimated)", extra("KEFU_NOTIFY_DISABLE")},
	{"KEFU_NOTIFY_TEMPLATES", "", "file of message templates (KEFU_NOTIFY_TEMPLATE_<KIND> sets one)", extra("KEFU_NOTIFY_TEMPLATES")},
	{"KEFU_NOTIFY_SEND_AS_AGENT", "", "send session messages as the serving agent (true/false)", extra("KEFU_NOTIFY_SEND_AS_AGENT")},
}

// Load reads the configuration through getenv (os.Getenv in production).
// An invalid value is an error naming the variable.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	for _, v := range Vars {
		val := getenv(v.Name)
		if val == "" {
			val = v.Default
		}
		if val == "" {
			continue
		}
		if err := v.set(&c, val); err != nil {
			return Config{}, fmt.Errorf("%s: %w", v.Name, err)
		}
	}
	return c, nil
}

// Set applies one variable by name (flags use it to override the environment).
func (c *Config) Set(name, value string) error {
	for _, v := range Vars {
		if v.Name == name {
			if err := v.set(c, value); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("unknown setting %s", name)
}

// MissingError names the first variable a role needs and lacks.
type MissingError struct{ Var, Role, Why string }

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s is required by %s (%s)", e.Var, e.Role, e.Why)
}

// Need lists the settings one integration needs.
type Need struct {
	Integration string
	Vars        []string
}

// Needs of the integrations.
var (
	NeedCallback  = Need{"WeChat callbacks", []string{"KEFU_WECHAT_APPID", "KEFU_WECHAT_TOKEN"}}
	NeedWeChatAPI = Need{"the WeChat API", []string{"KEFU_WECHAT_APPID", "KEFU_WECHAT_SECRET"}}
	NeedTucao     = Need{"the Tucao poller", []string{"KEFU_TUCAO_PRODUCT_ID", "KEFU_TUCAO_SECRET"}}
)

// NoneSet reports whether none of need's variables is set.
func (c Config) NoneSet(need Need) bool {
	for _, name := range need.Vars {
		if c.get(name) != "" {
			return false
		}
	}
	return true
}

// Check returns a MissingError for the first variable of need that is unset.
func (c Config) Check(role string, need Need) error {
	for _, name := range need.Vars {
		if c.get(name) == "" {
			return &MissingError{Var: name, Role: role, Why: need.Integration}
		}
	}
	return nil
}

func (c Config) get(name string) string {
	switch name {
	case "KEFU_WECHAT_APPID":
		return c.WeChatAppID
	case "KEFU_WECHAT_SECRET":
		return c.WeChatSecret.Value()
	case "KEFU_WECHAT_TOKEN":
		return c.WeChatToken.Value()
	case "KEFU_TUCAO_PRODUCT_ID":
		return c.TucaoProductID
	case "KEFU_TUCAO_SECRET":
		return c.TucaoSecret.Value()
	}
	return "set"
}
