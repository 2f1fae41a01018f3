package queuecare

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/customers"
)

// Default texts. {minutes} is replaced by the stale timeout in minutes and
// {link} by the customer's feedback link.
const (
	DefaultLeaveConfirmation = "已为您取消排队。如需人工客服，请再次发送您的问题。"
	DefaultAgentLeftNote     = "客户已取消排队"
	DefaultStaleMessage      = "您好，本次会话已有 {minutes} 分钟没有新消息，已自动结束。感谢您的咨询！"
	DefaultStaleFeedbackLine = "欢迎告诉我们您的意见：{link}"
	DefaultAgentStaleNote    = "会话 {minutes} 分钟无活动，已自动关闭"
)

// Config of the queue-care service. Zero values take the defaults named on
// each field; Validate names what is wrong.
type Config struct {
	// AppID is the official account's appid (KEFU_WECHAT_APPID). Required.
	AppID string
	// Holder names this process in the lease (unique per process).
	// Default: queuecare-<hostname>-<pid>.
	Holder string

	// LeavePhrases take a waiting customer out of the queue (default
	// DefaultLeavePhrases). Matching ignores surrounding space, punctuation,
	// symbols and emoji, full-width/half-width form and letter case.
	LeavePhrases []string
	// LeaveConfirmation is sent once to a customer who left the queue.
	LeaveConfirmation string
	// LeaveMaxAge: a leave phrase older than this when it is handled (after
	// an outage) still takes the customer out, but is not confirmed: an
	// answer that late would puzzle them (default 10m).
	LeaveMaxAge time.Duration
	// AgentLeftNote is shown to the agent whose freshly accepted session is
	// closed because the customer had left (the deferred close).
	AgentLeftNote string
	// DeferredCloseWithin: only a session created this soon after the
	// customer left is closed for them (default 24h); a later one is a new
	// conversation.
	DeferredCloseWithin time.Duration

	// StaleAfter: a served session with no customer message and no
	// session event for this long is closed (default 30m).
	StaleAfter time.Duration
	// StaleDryRun only reports stale sessions (log, metric,
	// GET /api/kf/stale) and closes nothing.
	StaleDryRun bool
	// SweepInterval is how often the lease holder looks for stale
	// sessions (default 1m).
	SweepInterval time.Duration
	// StaleMessage tells the customer the session was closed; {minutes}.
	StaleMessage string
	// StaleFeedbackLine is appended on its own line when Deps.FeedbackLink
	// returns a link; {link}, {minutes}.
	StaleFeedbackLine string
	// AgentStaleNote is shown to the agent in the 多客服 client; {minutes}.
	AgentStaleNote string

	// ReconcileWindow: customers active within it are checked with
	// getsession (default 1h).
	ReconcileWindow time.Duration
	// ReconcileEvery: a customer is checked again at the earliest this long
	// after the previous check (default 5m).
	ReconcileEvery time.Duration
	// ReconcileCallsPerMinute caps getsession calls across all replicas
	// (only the lease holder reconciles; default 60). Negative turns
	// reconciliation off.
	ReconcileCallsPerMinute int

	// Tick is the lease holder's loop period: renew the lease, sweep when
	// due, reconcile within the budget (default 10s).
	Tick time.Duration
	// LeaseTTL: another replica takes over this long after the holder
	// stopped renewing (default 3 × Tick, at least 15s).
	LeaseTTL time.Duration
	// StateRetention: a customer record nobody wrote to for this long
	// expires from kefu_customers (default 7 days).
	StateRetention time.Duration
	// SendTimeout bounds one WeChat call (default 10s).
	SendTimeout time.Duration

	// Consumer settings (see bus.ConsumerSpec): Concurrency (default 4),
	// AckWait (default 60s, above two WeChat calls), MaxDeliver (default 5),
	// Backoff (default 1s, 5s, 30s, 2m).
	Concurrency int
	AckWait     time.Duration
	MaxDeliver  int
	Backoff     []time.Duration
}

func (c *Config) setDefaults() {
	if c.Holder == "" {
		host, _ := os.Hostname()
		c.Holder = fmt.Sprintf("queuecare-%s-%d", host, os.Getpid())
	}
	if len(c.LeavePhrases) == 0 {
		c.LeavePhrases = customers.DefaultLeavePhrases
	}
	c.LeaveConfirmation = cmp.Or(c.LeaveConfirmation, DefaultLeaveConfirmation)
	c.LeaveMaxAge = config.PositiveOr(c.LeaveMaxAge, 10*time.Minute)
	c.AgentLeftNote = cmp.Or(c.AgentLeftNote, DefaultAgentLeftNote)
	c.DeferredCloseWithin = config.PositiveOr(c.DeferredCloseWithin, 24*time.Hour)
	c.StaleAfter = cmp.Or(c.StaleAfter, 30*time.Minute)
	c.SweepInterval = config.PositiveOr(c.SweepInterval, time.Minute)
	c.StaleMessage = cmp.Or(c.StaleMessage, DefaultStaleMessage)
	c.StaleFeedbackLine = cmp.Or(c.StaleFeedbackLine, DefaultStaleFeedbackLine)
	c.AgentStaleNote = cmp.Or(c.AgentStaleNote, DefaultAgentStaleNote)
	c.ReconcileWindow = config.PositiveOr(c.ReconcileWindow, time.Hour)
	c.ReconcileEvery = config.PositiveOr(c.ReconcileEvery, 5*time.Minute)
	c.ReconcileCallsPerMinute = cmp.Or(c.ReconcileCallsPerMinute, 60)
	c.Tick = config.PositiveOr(c.Tick, 10*time.Second)
	c.LeaseTTL = config.PositiveOr(c.LeaseTTL, max(3*c.Tick, 15*time.Second))
	c.StateRetention = config.PositiveOr(c.StateRetention, customers.DefaultRetention)
	c.SendTimeout = config.PositiveOr(c.SendTimeout, 10*time.Second)
	c.Concurrency = config.PositiveOr(c.Concurrency, 4)
	c.AckWait = config.PositiveOr(c.AckWait, 60*time.Second)
	c.MaxDeliver = config.PositiveOr(c.MaxDeliver, 5)
}

// Validate names the first setting that is missing or wrong. Zero values
// stand for their defaults.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.AppID == "":
		return errors.New("queuecare: AppID (KEFU_WECHAT_APPID) is required")
	case c.StaleAfter < time.Minute:
		return fmt.Errorf("queuecare: StaleAfter %s is below one minute; sessions would close while customers type", c.StaleAfter)
	case c.LeaseTTL <= c.Tick:
		return fmt.Errorf("queuecare: LeaseTTL %s must exceed Tick %s, or the lease lapses between renewals", c.LeaseTTL, c.Tick)
	case c.AckWait <= 2*c.SendTimeout:
		return fmt.Errorf("queuecare: AckWait %s must exceed two WeChat calls (2 × SendTimeout %s)", c.AckWait, c.SendTimeout)
	case strings.TrimSpace(c.LeaveConfirmation) == "":
		return errors.New("queuecare: LeaveConfirmation is blank")
	case !strings.Contains(c.StaleFeedbackLine, "{link}"):
		return errors.New("queuecare: StaleFeedbackLine must contain {link}")
	}
	if _, err := customers.NewLeaveDetector(c.LeavePhrases); err != nil {
		return fmt.Errorf("queuecare: %w", err)
	}
	return nil
}

// render fills {minutes} and {link} in an operator's text.
func render(text string, stale time.Duration, link string) string {
	return strings.NewReplacer("{minutes}", fmt.Sprint(int(stale.Round(time.Minute)/time.Minute)), "{link}", link).Replace(text)
}
