// Package config reads kefu's configuration. Every KEFU_* variable any
// part of kefu reads is one row of the table in vars.go — its type, the
// part that reads it, its default and its help — so that Load (one parser
// for the environment and the roles' flags), `kefu help` and the deploy
// tests cannot disagree on a name or a default. Services get typed fields,
// never the raw environment; a bad value is one line naming the variable
// and the form wanted; secrets are kept in a type that never prints its
// value. README.md, "Configuration", describes the variables for people.
package config

import (
	"fmt"
	"net/netip"
	"time"
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

	// The notifier's (services/notifier).
	PublicURL             string            // KEFU_PUBLIC_URL
	FeedbackLinkSecret    Secret            // KEFU_FEEDBACK_LINK_SECRET
	FeedbackLinkTTL       time.Duration     // KEFU_FEEDBACK_LINK_TTL
	FeedbackNickname      string            // KEFU_FEEDBACK_NICKNAME
	FeedbackAvatarURL     string            // KEFU_FEEDBACK_AVATAR_URL
	NotifyRateLimit       float64           // KEFU_NOTIFY_RATE_LIMIT; negative: off
	NotifyWaitMinInterval time.Duration     // KEFU_NOTIFY_WAIT_MIN_INTERVAL
	NotifyDisable         []string          // KEFU_NOTIFY_DISABLE
	NotifyTemplates       string            // KEFU_NOTIFY_TEMPLATES, a file
	NotifyTemplate        map[string]string // KEFU_NOTIFY_TEMPLATE_<KIND>, by kind (session_created…)
	NotifySendAsAgent     bool              // KEFU_NOTIFY_SEND_AS_AGENT
}

// Load reads the configuration through getenv (os.Getenv in production):
// every row of Vars a role reads, its default when unset. An invalid value
// is one error naming the variable, the problem and the form wanted.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	for _, v := range Vars {
		if v.CLI {
			continue // read by the command that owns it, not by the roles
		}
		for _, name := range v.Names() {
			val := getenv(name)
			if val == "" {
				val = v.Default
			}
			if val == "" {
				continue
			}
			if err := v.apply(&c, name, val); err != nil {
				return Config{}, err
			}
		}
	}
	return c, nil
}

// Set applies one variable by name (flags use it to override the environment).
func (c *Config) Set(name, value string) error {
	for _, v := range Vars {
		if v.CLI {
			continue
		}
		for _, n := range v.Names() {
			if n == name {
				return v.apply(c, name, value)
			}
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
