package notifier

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/pkg/events"
)

// Names of the durable consumers the notifier binds to. Every notifier
// process uses the same two, so they share the work.
const (
	DurableSessions = "notifier-sessions" // KEFU_WECHAT, kefu.wechat.kf.session.>
	DurableWait     = "notifier-wait"     // KEFU_KF, kefu.kf.wait.estimated
	// Role names the dead-letter subject kefu.dlq.notifier.
	Role = "notifier"
)

// DefaultTucaoURL is the Tucao feedback page prefix; the product id follows.
const DefaultTucaoURL = "https://support.qq.com/product/"

// Kinds the notifier sends, in the words of events.Notification.Kind.
var Kinds = []string{
	events.NotifySessionCreated,
	events.NotifySessionSwitched,
	events.NotifySessionClosed,
	events.NotifyWaitEstimated,
}

// Templates are the message texts, one per kind, with {placeholders} (see
// Placeholders). An empty field takes the Chinese default.
type Templates struct {
	SessionCreated  string `json:"session_created,omitempty"`
	SessionSwitched string `json:"session_switched,omitempty"`
	SessionClosed   string `json:"session_closed,omitempty"`
	WaitEstimated   string `json:"wait_estimated,omitempty"`
}

// Default texts. The closed-session text has two forms: with the feedback
// link when a Tucao product is configured, and a plain thank-you without.
const (
	DefaultSessionCreated      = "客服 {nickname} 正在为您服务"
	DefaultSessionSwitched     = "已为您转接至客服 {nickname}"
	DefaultSessionClosed       = "感谢您的咨询！欢迎对本次服务提出意见和建议：{feedback_url}"
	DefaultSessionClosedNoLink = "感谢您的咨询，祝您生活愉快！"
	DefaultWaitEstimated       = "您前面还有 {ahead} 位，预计等待约 {minutes} 分钟"
	// DefaultWaitEstimatedNext replaces the default wait text for the
	// customer first in line ("0 ahead" reads oddly); a configured wait
	// template is used for every place.
	DefaultWaitEstimatedNext = "您是下一位，预计等待约 {minutes} 分钟"
	DefaultFeedbackNickname  = "微信用户"
	maxTucaoNicknameRunes    = 8
)

// Placeholders lists, per kind, what a template may use:
//
//	{nickname}        the agent's nickname (getkflist), its account when unknown
//	{kf_account}      the agent's account
//	{from_nickname}   switched: the previous agent's nickname
//	{from_kf_account} switched: the previous agent's account
//	{feedback_url}    closed: the link to the Tucao feedback page
//	{position}        wait: 1-based place in the queue
//	{ahead}           wait: customers ahead (position − 1)
//	{minutes}         wait: expected wait, whole minutes rounded up (at least 1)
//	{p90_minutes}     wait: the wait 90 % of customers do not exceed, in minutes
var Placeholders = map[string][]string{
	events.NotifySessionCreated:  {"nickname", "kf_account"},
	events.NotifySessionSwitched: {"nickname", "kf_account", "from_nickname", "from_kf_account"},
	events.NotifySessionClosed:   {"nickname", "kf_account", "feedback_url"},
	events.NotifyWaitEstimated:   {"position", "ahead", "minutes", "p90_minutes"},
}

// WaitRules throttle the wait-estimate messages (docs/estimator.md): a
// customer hears on entering the queue, then only when the estimate changes
// materially — by at least MinChange and by at least MinChangeRatio of the
// estimate last sent — never twice within MinInterval, and never once a
// session was created.
type WaitRules struct {
	// MinInterval is the least time between two wait messages to one
	// customer (default 3m).
	MinInterval time.Duration
	// MinChange is the least absolute change of the estimate worth a new
	// message (default 2m).
	MinChange time.Duration
	// MinChangeRatio is the least relative change (default 0.3, i.e. 30 %).
	MinChangeRatio float64
	// MaxAge drops estimates older than this when they are handled (a
	// backlog or a replay must not tell a customer an old estimate;
	// default 2m).
	MaxAge time.Duration
}

// Config of the notifier. Zero values take the defaults named on each field.
type Config struct {
	// Instance names this process in the idempotency markers it writes
	// (default: host name, process id and a random suffix).
	Instance string

	// Concurrency is how many events each consumer handles at once per
	// process (default 16).
	Concurrency int
	// MaxAckPending bounds the events in flight per consumer over all
	// processes (default 4 × Concurrency). AckWait runs from delivery, so
	// events waiting for a free handler must not wait longer than that.
	MaxAckPending int
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default 60s). It must exceed SendTimeout + RecordTimeout, so that a
	// live process never sees its own message handed to another one.
	AckWait time.Duration
	// MaxDeliver is how many times an event is tried (default 6). When a
	// send still fails with a retryable error on the last try, the failure
	// is published as kefu.notify.failed; other errors (the bus is down)
	// move the event to kefu.dlq.notifier.
	MaxDeliver int
	// Backoff is the delay before the n-th redelivery after a retryable
	// failure (default 1s, 5s, 30s, 2m).
	Backoff []time.Duration

	// SendTimeout bounds one notification from its claim to WeChat's
	// answer: rate-limit wait, nickname lookup and the send with the
	// client's own retries of -1 and token errors (default 30s).
	SendTimeout time.Duration
	// RecordTimeout bounds publishing the outcome and recording it after
	// the send (default 10s).
	RecordTimeout time.Duration

	// RateLimit is the most messages per second this process sends
	// (default 100); with several processes each has its own. Negative:
	// no limit.
	RateLimit float64
	// RateBurst is the limiter's burst (default max(1, RateLimit)).
	RateBurst int

	// MaxEventAge: a session event received longer ago than this is not
	// announced (a backlog after an outage, a consumer reset; default 30m).
	MaxEventAge time.Duration
	// Wait throttles the wait-estimate messages.
	Wait WaitRules
	// NicknameTTL is how long agents' nicknames from getkflist are cached
	// (default 10m). An unknown account refreshes the list at most every
	// NicknameTTL/10.
	NicknameTTL time.Duration
	// SendAsAgent sends the session messages in the agent's name
	// (customservice.kf_account) instead of the official account's.
	SendAsAgent bool

	// Templates are the message texts; Disabled lists kinds not sent at
	// all (session_created, session_switched, session_closed, wait_estimated).
	Templates Templates
	Disabled  []string

	// PublicURL is the base URL under which this service's HTTP routes are
	// reachable from customers' phones (KEFU_PUBLIC_URL), e.g.
	// https://kefu.example.com. With it, the closed-session link points to
	// PublicURL/feedback/{signed token}, a page that logs the customer in
	// to Tucao; without it, the link is the bare Tucao page, where the
	// customer posts anonymously and the post cannot be linked to the session.
	PublicURL string
	// TucaoProductID is the Tucao product (KEFU_TUCAO_PRODUCT_ID). Without
	// it the closed-session message carries no link.
	TucaoProductID string
	// TucaoURL is the feedback page prefix (default DefaultTucaoURL; the
	// demo points it at a fake).
	TucaoURL string
	// FeedbackLinkSecret signs the feedback links and keys the customers'
	// pseudonyms on Tucao (KEFU_FEEDBACK_LINK_SECRET, at least 16
	// characters; package feedbacklink). When empty both keys are derived
	// from WeChatSecret; rotating the WeChat secret then invalidates the
	// links already sent and changes every pseudonym. The feedback role
	// must be given the same secret to link posts to sessions.
	FeedbackLinkSecret string
	// WeChatSecret is KEFU_WECHAT_SECRET, only used to derive the keys.
	WeChatSecret string
	// FeedbackLinkTTL is how long a feedback link stays valid (default 168h).
	FeedbackLinkTTL time.Duration
	// FeedbackNickname is the name customers appear under on Tucao, at
	// most 8 characters (default 微信用户: WeChat no longer gives official
	// accounts their followers' nicknames).
	FeedbackNickname string
	// FeedbackAvatarURL is the avatar customers appear with on Tucao; it
	// must be an https png or jpg URL (default PublicURL/feedback/avatar.png,
	// served by Routes).
	FeedbackAvatarURL string
}

func (c *Config) setDefaults() {
	if c.Instance == "" {
		c.Instance = defaultInstance()
	}
	c.Concurrency = config.PositiveOr(c.Concurrency, 16)
	c.MaxAckPending = config.PositiveOr(c.MaxAckPending, 4*c.Concurrency)
	c.AckWait = config.PositiveOr(c.AckWait, 60*time.Second)
	c.MaxDeliver = config.PositiveOr(c.MaxDeliver, 6)
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	c.SendTimeout = config.PositiveOr(c.SendTimeout, 30*time.Second)
	c.RecordTimeout = config.PositiveOr(c.RecordTimeout, 10*time.Second)
	c.RateLimit = cmp.Or(c.RateLimit, 100)
	c.RateBurst = config.PositiveOr(c.RateBurst, max(1, int(c.RateLimit)))
	c.MaxEventAge = config.PositiveOr(c.MaxEventAge, 30*time.Minute)
	c.Wait.MinInterval = config.PositiveOr(c.Wait.MinInterval, 3*time.Minute)
	c.Wait.MinChange = config.PositiveOr(c.Wait.MinChange, 2*time.Minute)
	c.Wait.MinChangeRatio = config.PositiveOr(c.Wait.MinChangeRatio, 0.3)
	c.Wait.MaxAge = config.PositiveOr(c.Wait.MaxAge, 2*time.Minute)
	c.NicknameTTL = config.PositiveOr(c.NicknameTTL, 10*time.Minute)
	c.TucaoURL = cmp.Or(c.TucaoURL, DefaultTucaoURL)
	c.FeedbackLinkTTL = config.PositiveOr(c.FeedbackLinkTTL, 7*24*time.Hour)
	c.FeedbackNickname = cmp.Or(c.FeedbackNickname, DefaultFeedbackNickname)
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.FeedbackAvatarURL == "" && c.PublicURL != "" {
		c.FeedbackAvatarURL = c.PublicURL + avatarPath
	}
	t := &c.Templates
	t.SessionCreated = cmp.Or(t.SessionCreated, DefaultSessionCreated)
	t.SessionSwitched = cmp.Or(t.SessionSwitched, DefaultSessionSwitched)
	if t.SessionClosed == "" {
		t.SessionClosed = DefaultSessionClosed
		if c.TucaoProductID == "" {
			t.SessionClosed = DefaultSessionClosedNoLink
		}
	}
	t.WaitEstimated = cmp.Or(t.WaitEstimated, DefaultWaitEstimated)
}

// Validate names the first missing or bad setting (by its environment
// variable where it has one). Zero values are judged by their defaults.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.SendTimeout+c.RecordTimeout >= c.AckWait:
		return fmt.Errorf("notifier: AckWait (%v) must exceed SendTimeout + RecordTimeout (%v)", c.AckWait, c.SendTimeout+c.RecordTimeout)
	case c.RateLimit > 0 && time.Duration(float64(c.Concurrency)/c.RateLimit*float64(time.Second)) >= c.SendTimeout/2:
		// Each handler waits for the limiter within its SendTimeout; with
		// Concurrency of them queued, the last waits Concurrency/RateLimit.
		return fmt.Errorf("notifier: KEFU_NOTIFY_RATE_LIMIT %g/s is too low for Concurrency %d within SendTimeout %v", c.RateLimit, c.Concurrency, c.SendTimeout)
	case c.Wait.MinChangeRatio > 1:
		return fmt.Errorf("notifier: Wait.MinChangeRatio %v is not between 0 and 1", c.Wait.MinChangeRatio)
	case c.TucaoProductID != "" && !isDigits(c.TucaoProductID):
		return fmt.Errorf("notifier: KEFU_TUCAO_PRODUCT_ID %q is not a Tucao product id (digits)", c.TucaoProductID)
	case utf8.RuneCountInString(c.FeedbackNickname) > maxTucaoNicknameRunes:
		return fmt.Errorf("notifier: KEFU_FEEDBACK_NICKNAME is longer than Tucao's %d characters", maxTucaoNicknameRunes)
	case c.FeedbackLinkSecret != "" && len(c.FeedbackLinkSecret) < feedbacklink.MinSecretLength:
		return fmt.Errorf("notifier: KEFU_FEEDBACK_LINK_SECRET must be at least %d characters", feedbacklink.MinSecretLength)
	}
	for _, d := range c.Disabled {
		if _, ok := Placeholders[d]; !ok {
			return fmt.Errorf("notifier: KEFU_NOTIFY_DISABLE: unknown kind %q (want %s)", d, strings.Join(Kinds, ", "))
		}
	}
	if c.PublicURL != "" {
		if err := checkBaseURL(c.PublicURL); err != nil {
			return fmt.Errorf("notifier: KEFU_PUBLIC_URL: %w", err)
		}
		if c.TucaoProductID != "" && c.FeedbackLinkSecret == "" && c.WeChatSecret == "" {
			return errors.New("notifier: KEFU_FEEDBACK_LINK_SECRET (or KEFU_WECHAT_SECRET to derive it from) is required to sign feedback links when KEFU_PUBLIC_URL is set")
		}
	}
	if err := checkBaseURL(c.TucaoURL); err != nil {
		return fmt.Errorf("notifier: TucaoURL: %w", err)
	}
	if c.FeedbackAvatarURL != "" {
		if err := checkBaseURL(c.FeedbackAvatarURL); err != nil {
			return fmt.Errorf("notifier: KEFU_FEEDBACK_AVATAR_URL: %w", err)
		}
	}
	for kind, text := range c.Templates.byKind() {
		tmpl, err := parseTemplate(kind, text)
		if err != nil {
			return fmt.Errorf("notifier: %w", err)
		}
		if kind == events.NotifySessionClosed && tmpl.uses("feedback_url") && c.TucaoProductID == "" && c.enabled(kind) {
			return errors.New("notifier: KEFU_TUCAO_PRODUCT_ID is required by the session_closed template's {feedback_url}")
		}
	}
	return nil
}

func (c Config) enabled(kind string) bool {
	for _, d := range c.Disabled {
		if d == kind {
			return false
		}
	}
	return true
}

func (t Templates) byKind() map[string]string {
	return map[string]string{
		events.NotifySessionCreated:  t.SessionCreated,
		events.NotifySessionSwitched: t.SessionSwitched,
		events.NotifySessionClosed:   t.SessionClosed,
		events.NotifyWaitEstimated:   t.WaitEstimated,
	}
}

func (t *Templates) set(kind, text string) {
	switch kind {
	case events.NotifySessionCreated:
		t.SessionCreated = text
	case events.NotifySessionSwitched:
		t.SessionSwitched = text
	case events.NotifySessionClosed:
		t.SessionClosed = text
	case events.NotifyWaitEstimated:
		t.WaitEstimated = text
	}
}

// staleAfter is the age from which a "sending" marker can only have been
// left by a process that died: a live one finishes within SendTimeout +
// RecordTimeout, and the margin covers clock skew between processes.
func (c Config) staleAfter() time.Duration {
	return c.SendTimeout + c.RecordTimeout + 5*time.Second
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func defaultInstance() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "notifier"
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + randomHex(4)
}

// FromConfig is the notifier's view of kefu's configuration (the table in
// internal/config, where every variable, its default and its form are
// declared): the typed settings it reads, and the message templates from
// the file KEFU_NOTIFY_TEMPLATES ({"session_created": "…", …}) under those
// of KEFU_NOTIFY_TEMPLATE_<KIND>, which win.
func FromConfig(kc config.Config) (Config, error) {
	c := Config{
		PublicURL:          kc.PublicURL,
		TucaoProductID:     kc.TucaoProductID,
		FeedbackLinkSecret: kc.FeedbackLinkSecret.Value(),
		WeChatSecret:       kc.WeChatSecret.Value(),
		FeedbackLinkTTL:    kc.FeedbackLinkTTL,
		FeedbackNickname:   kc.FeedbackNickname,
		FeedbackAvatarURL:  kc.FeedbackAvatarURL,
		RateLimit:          kc.NotifyRateLimit,
		SendAsAgent:        kc.NotifySendAsAgent,
		Disabled:           kc.NotifyDisable,
	}
	c.Wait.MinInterval = kc.NotifyWaitMinInterval
	if path := kc.NotifyTemplates; path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("KEFU_NOTIFY_TEMPLATES: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.Templates); err != nil {
			return Config{}, fmt.Errorf("KEFU_NOTIFY_TEMPLATES: %s: %w", path, err)
		}
	}
	for _, kind := range Kinds {
		if v := kc.NotifyTemplate[kind]; v != "" {
			c.Templates.set(kind, v)
		}
	}
	return c, nil
}

// LoadEnv reads kefu's configuration through getenv (os.Getenv in
// production) and returns the notifier's view of it; an invalid value is
// an error naming the variable.
func LoadEnv(getenv func(string) string) (Config, error) {
	kc, err := config.Load(getenv)
	if err != nil {
		return Config{}, err
	}
	return FromConfig(kc)
}
