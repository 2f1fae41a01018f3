package sendonce

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Sender sends a customer-service text message; *wechat.Client implements
// it.
type Sender interface {
	SendText(ctx context.Context, openid, content, asKfAccount string) error
}

// Config is what a Ledger needs.
type Config struct {
	Bus *bus.Bus
	// KV is the kefu_notified bucket.
	KV     jetstream.KeyValue
	Sender Sender
	// Source is the ce-source of the outcome events.
	Source string
	// Owner names this process in the records it writes.
	Owner string
	// Now is the clock of the records and outcome events; default
	// time.Now.
	Now func() time.Time
	Log *zap.Logger // optional
	// SendTimeout, when set, bounds the send itself; without it the
	// caller's context does.
	SendTimeout time.Duration
	// RecordTimeout bounds publishing and recording an outcome, and giving
	// a claim back; both run even when the caller's context has ended.
	RecordTimeout time.Duration
	// StaleAfter is the age from which a claim can only have been left by
	// a process that died: more than a send and its record take, plus a
	// margin for clock skew between processes.
	StaleAfter time.Duration
	// Sent, when set, is called when WeChat accepted a message, at the
	// time of its answer (for latency metrics).
	Sent func(m *Message, at time.Time)
}

// Message is one message to send at most once.
type Message struct {
	// Key is the message's record in the bucket: one per fact that calls
	// for a message.
	Key  string
	Kind string // events.Notify*
	// Cause is the ce-id of the event that calls for the message; the
	// outcome event's ce-id is OutcomeID(Cause).
	Cause, AppID, OpenID string
	// ReceivedAt is when kefu learnt of the cause (for Config.Sent).
	ReceivedAt time.Time
	// Content is what is sent when Prepare is nil.
	Content Content
	// Prepare, when set, runs once the key is claimed: it renders the
	// message, or decides not to send it after all.
	Prepare func(ctx context.Context) (Content, error)
}

// Content is a message's text and how it is sent.
type Content struct {
	Text string // what the customer gets
	// Recorded is Text as the outcome event shows it (secrets such as a
	// feedback token blanked); "" means Text.
	Recorded string
	AsAgent  string // kf_account to send as; "" for the account itself
	// Skip, when set, records the message as skipped for this reason and
	// sends nothing.
	Skip string
	// Release undoes what Prepare reserved, when nothing was sent and the
	// message will be tried again.
	Release func(ctx context.Context)
}

// Result is how Send settled a message.
type Result struct {
	// Outcome is StateSent, StateFailed, StateSkipped or OutcomeDuplicate.
	Outcome string
	// Reason is Content.Skip of a skipped message.
	Reason string
}

// Errors of Send: the message is being sent now; try again later.
var (
	ErrInFlight = errors.New("being sent by this process")
	ErrClaimed  = errors.New("being sent by another process")
)

// Ledger sends messages at most once each (see the package doc).
type Ledger struct {
	cfg Config
	// inflight are the keys this process is sending now.
	inflight sync.Map // key → struct{}
	// unrecorded are outcomes that could not be published or recorded
	// yet, by key; the next Send of the key finishes the job.
	unrecorded sync.Map // key → events.Notification
	// unsent are claims this process could not give back after a send
	// that certainly did not reach WeChat, by key, with their revision:
	// only that revision, still ours, may be taken over.
	unsent sync.Map // key → uint64
}

// New returns a ledger over cfg.KV.
func New(cfg Config) (*Ledger, error) {
	if cfg.Bus == nil || cfg.KV == nil || cfg.Sender == nil {
		return nil, errors.New("sendonce: Bus, KV and Sender are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.RecordTimeout <= 0 {
		cfg.RecordTimeout = 10 * time.Second
	}
	if cfg.StaleAfter <= 0 {
		return nil, errors.New("sendonce: StaleAfter is required")
	}
	return &Ledger{cfg: cfg}, nil
}

// Send claims m's key, sends m and records the outcome, unless the key
// has a record already. An error means nothing was decided: call Send
// again later (the bus redelivers); a message that certainly never
// reached WeChat is such an error, whatever it was.
func (l *Ledger) Send(ctx context.Context, m Message) (Result, error) {
	rev, existing, err := l.claim(ctx, &m)
	if err != nil {
		return Result{}, err
	}
	if existing != nil {
		return l.settle(ctx, &m, existing)
	}
	return l.sendClaimed(ctx, &m, rev)
}

// sendClaimed sends m under our claim at rev.
func (l *Ledger) sendClaimed(ctx context.Context, m *Message, rev uint64) (Result, error) {
	l.inflight.Store(m.Key, struct{}{})
	defer l.inflight.Delete(m.Key)

	c := m.Content
	if m.Prepare != nil {
		var err error
		if c, err = m.Prepare(ctx); err != nil {
			l.unclaim(m.Key, rev)
			return Result{}, err
		}
	}
	if c.Skip != "" {
		if err := l.finishSkipped(m, rev, c.Skip); err != nil {
			l.cfg.Log.Warn("record skipped message", zap.Error(err), zap.String("key", m.Key))
			l.unclaim(m.Key, rev)
		}
		return Result{Outcome: StateSkipped, Reason: c.Skip}, nil
	}
	sendErr := l.send(ctx, m.OpenID, &c)
	now := l.cfg.Now()
	n := events.Notification{
		Meta:   events.Meta{AppID: m.AppID, OccurredAt: now, ReceivedAt: now},
		OpenID: m.OpenID, Kind: m.Kind, CauseEventID: m.Cause, Text: c.Recorded, Outcome: events.OutcomeSent,
	}
	if n.Text == "" {
		n.Text = c.Text
	}
	switch wechat.Classify(sendErr) {
	case wechat.VerdictDone:
		if l.cfg.Sent != nil {
			l.cfg.Sent(m, now)
		}
	case wechat.VerdictRetry:
		// Certainly not sent: however often it fails, trying again cannot
		// message the customer twice.
		if c.Release != nil {
			rctx, cancel := l.recordContext()
			c.Release(rctx)
			cancel()
		}
		l.unclaim(m.Key, rev)
		return Result{}, fmt.Errorf("send %s: %w", m.Kind, sendErr)
	case wechat.VerdictUnknown:
		n.Outcome, n.ErrMsg = events.OutcomeFailed, UnknownErrMsg(sendErr)
	default: // refused
		n.Outcome = events.OutcomeFailed
		n.ErrCode, n.ErrMsg = errCode(sendErr)
	}
	if n.Outcome == events.OutcomeFailed {
		l.cfg.Log.Warn("notification failed", zap.String("kind", m.Kind), zap.String("key", m.Key),
			zap.Int("errcode", n.ErrCode), zap.String("errmsg", n.ErrMsg))
	}
	if err := l.record(m.Key, rev, n); err != nil {
		return Result{}, err
	}
	return Result{Outcome: n.Outcome}, nil
}

func (l *Ledger) send(ctx context.Context, openid string, c *Content) error {
	if l.cfg.SendTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.cfg.SendTimeout)
		defer cancel()
	}
	return l.cfg.Sender.SendText(ctx, openid, c.Text, c.AsAgent)
}

// recordContext bounds the writes that follow a send: they run even when
// the caller's context has ended, for the send is decided.
func (l *Ledger) recordContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), l.cfg.RecordTimeout)
}

// claim creates the key's "sending" record; existing is the record found
// instead when another delivery got there first.
func (l *Ledger) claim(ctx context.Context, m *Message) (rev uint64, existing jetstream.KeyValueEntry, err error) {
	marker, err := Encode(Record{State: StateSending, Cause: m.Cause, Kind: m.Kind, Owner: l.cfg.Owner, At: l.cfg.Now()})
	if err != nil {
		return 0, nil, err
	}
	for range 3 {
		rev, err = l.cfg.KV.Create(ctx, m.Key, marker)
		if err == nil {
			return rev, nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil, fmt.Errorf("claim %s: %w", m.Key, err)
		}
		existing, err = l.cfg.KV.Get(ctx, m.Key)
		if err == nil {
			return 0, existing, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, nil, fmt.Errorf("read claim %s: %w", m.Key, err)
		}
		// Given back between our create and get: try again.
	}
	return 0, nil, fmt.Errorf("claim %s: key keeps changing", m.Key)
}

// unclaim gives our claim back so the next try starts afresh; only used
// when nothing was sent. When that fails the claim stays, and this
// process remembers it sent nothing under it: its next try takes the
// claim over instead of waiting for it to look abandoned (and be given
// up). Should this process stop first, the claim turns stale and the
// message is recorded as failed with an unknown outcome: at most once
// still holds.
func (l *Ledger) unclaim(key string, rev uint64) {
	ctx, cancel := l.recordContext()
	defer cancel()
	if err := l.cfg.KV.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		l.unsent.Store(key, rev)
		l.cfg.Log.Warn("release message claim", zap.Error(err), zap.String("key", key))
	}
}

// settle handles a key that has a record already.
func (l *Ledger) settle(ctx context.Context, m *Message, entry jetstream.KeyValueEntry) (Result, error) {
	if rev, ok := l.unsent.LoadAndDelete(m.Key); ok && rev.(uint64) == entry.Revision() {
		return l.sendClaimed(ctx, m, entry.Revision())
	}
	rec, err := Decode(entry.Value())
	if err != nil {
		// Unreadable: someone handled it. Never risk a second message.
		l.cfg.Log.Error("unreadable message record; not sending", zap.Error(err), zap.String("key", m.Key))
		return Result{Outcome: OutcomeDuplicate}, nil
	}
	if rec.Final() {
		return Result{Outcome: OutcomeDuplicate}, nil
	}
	// A claim.
	if v, ok := l.unrecorded.Load(m.Key); ok {
		// This process sent it but could not record it: finish that.
		n := v.(events.Notification)
		if err := l.record(m.Key, entry.Revision(), n); err != nil {
			return Result{}, err
		}
		return Result{Outcome: n.Outcome}, nil
	}
	if _, ok := l.inflight.Load(m.Key); ok {
		return Result{}, ErrInFlight
	}
	if age := l.cfg.Now().Sub(rec.At); age < l.cfg.StaleAfter {
		return Result{}, fmt.Errorf("%w (by %s, %v ago)", ErrClaimed, rec.Owner, age.Round(time.Millisecond))
	}
	n, err := l.recoverCrashed(ctx, m, entry.Revision(), rec)
	if err != nil {
		return Result{}, err
	}
	return Result{Outcome: n.Outcome}, nil
}

// recoverCrashed settles a claim left by a process that died after
// claiming: the message may or may not have reached WeChat, which has no
// idempotency key, so it is not sent again (at most once) and recorded as
// failed — unless the dead process had already published the outcome,
// which JetStream's de-duplication reveals.
func (l *Ledger) recoverCrashed(ctx context.Context, m *Message, rev uint64, rec Record) (events.Notification, error) {
	now := l.cfg.Now()
	n := events.Notification{
		Meta:   events.Meta{AppID: m.AppID, OccurredAt: now, ReceivedAt: now},
		OpenID: m.OpenID, Kind: m.Kind, CauseEventID: m.Cause, Outcome: events.OutcomeFailed, ErrMsg: CrashedErrMsg,
	}
	pub, err := l.publish(ctx, n)
	if err != nil {
		return n, err
	}
	if pub.Duplicate {
		if orig, err := l.loadOutcome(ctx, pub.Sequence); err == nil {
			n = orig
		} else {
			l.cfg.Log.Warn("read published outcome", zap.Error(err), zap.Uint64("seq", pub.Sequence))
		}
	}
	l.cfg.Log.Warn("settled a message left by a stopped process", zap.String("key", m.Key),
		zap.String("owner", rec.Owner), zap.String("outcome", n.Outcome), zap.String("errmsg", n.ErrMsg))
	final, err := Encode(Record{State: n.Outcome, Cause: m.Cause, Kind: m.Kind, Owner: l.cfg.Owner, At: now,
		ErrCode: n.ErrCode, ErrMsg: n.ErrMsg, Seq: pub.Sequence})
	if err != nil {
		return n, err
	}
	if _, err := l.cfg.KV.Update(ctx, m.Key, final, rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return n, fmt.Errorf("record recovered %s: %w", m.Key, err)
	}
	return n, nil
}

// record publishes the outcome event and then turns the claim into the
// final record. Publishing first means a final record always has its
// event; a crash in between leaves a claim whose recovery finds the event
// through de-duplication. When either step fails, the outcome is kept in
// memory for the next try.
func (l *Ledger) record(key string, rev uint64, n events.Notification) error {
	ctx, cancel := l.recordContext()
	defer cancel()
	pub, err := l.publish(ctx, n)
	if err != nil {
		l.unrecorded.Store(key, n)
		return err
	}
	final, err := Encode(Record{State: n.Outcome, Cause: n.CauseEventID, Kind: n.Kind, Owner: l.cfg.Owner,
		At: l.cfg.Now(), ErrCode: n.ErrCode, ErrMsg: n.ErrMsg, Seq: pub.Sequence})
	if err != nil {
		return err
	}
	if _, err := l.cfg.KV.Update(ctx, key, final, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Another process took our claim for a dead one's; its
			// outcome event was de-duplicated against ours.
			l.cfg.Log.Warn("message record taken over by another process", zap.String("key", key))
			l.unrecorded.Delete(key)
			return nil
		}
		l.unrecorded.Store(key, n)
		return fmt.Errorf("record %s: %w", key, err)
	}
	l.unrecorded.Delete(key)
	return nil
}

func (l *Ledger) finishSkipped(m *Message, rev uint64, reason string) error {
	ctx, cancel := l.recordContext()
	defer cancel()
	rec, err := Encode(Record{State: StateSkipped, Cause: m.Cause, Kind: m.Kind, Owner: l.cfg.Owner, At: l.cfg.Now(), ErrMsg: reason})
	if err != nil {
		return err
	}
	_, err = l.cfg.KV.Update(ctx, m.Key, rec, rev)
	return err
}

func (l *Ledger) publish(ctx context.Context, n events.Notification) (bus.Published, error) {
	pub, err := l.cfg.Bus.Publish(ctx, n, bus.Envelope{ID: OutcomeID(n.CauseEventID), Source: l.cfg.Source, Time: n.OccurredAt})
	if err != nil {
		return pub, fmt.Errorf("publish outcome of %s: %w", n.Kind, err)
	}
	return pub, nil
}

func (l *Ledger) loadOutcome(ctx context.Context, seq uint64) (events.Notification, error) {
	stream, err := l.cfg.Bus.Stream(ctx, events.StreamNotify)
	if err != nil {
		return events.Notification{}, err
	}
	msg, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return events.Notification{}, err
	}
	return events.Decode[events.Notification](msg.Data)
}

// UnknownErrMsg is the errmsg of a message that may or may not have
// reached the customer: "unknown outcome: <reason>: <error>", the reason
// one of wechat.UnknownReasons (the labels of
// kefu_wechat_api_unknown_outcome_total).
func UnknownErrMsg(err error) string {
	return "unknown outcome: " + wechat.UnknownReason(err) + ": " + err.Error()
}

// errCode is the errcode and errmsg of a refusal: WeChat's own, or 0 and
// the error of one that did not come from WeChat.
func errCode(err error) (int, string) {
	var apiErr *wechat.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrCode, strings.TrimSpace(apiErr.ErrMsg)
	}
	return 0, err.Error()
}
