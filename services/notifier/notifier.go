package notifier

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Sender is the part of the WeChat client the notifier uses;
// *wechat.Client implements it.
type Sender interface {
	// SendText sends a customer-service text message (message/custom/send),
	// in an agent's name when asKfAccount is set.
	SendText(ctx context.Context, openid, content, asKfAccount string) error
	// GetKfList lists the agents, for their nicknames.
	GetKfList(ctx context.Context) ([]wechat.KfInfo, error)
}

// Deps are the service's collaborators.
type Deps struct {
	Bus        *bus.Bus
	Sender     Sender
	Logger     *zap.Logger           // optional
	Registerer prometheus.Registerer // optional
	// Now is the clock of every decision (event age, throttling, markers,
	// link expiry); default time.Now.
	Now func() time.Time
	// Suppress, when set, can hold back a message of kind to openid that
	// another part of kefu knows is wrong to send (the customer left the
	// queue, or kefu closed the session itself and said goodbye already).
	// An error (the state could not be read) retries the event later:
	// announcing without knowing could say goodbye a second time.
	Suppress func(ctx context.Context, kind, openid string) (bool, error)
}

// Service is the notifier.
type Service struct {
	cfg       Config
	bus       *bus.Bus
	sender    Sender
	log       *zap.Logger
	now       func() time.Time
	metrics   *metrics
	templates map[string]*messageTemplate
	// waitNext is the text for the first in line while the wait template
	// is the default one; nil otherwise.
	waitNext *messageTemplate
	names    *nicknames
	limiter  *rate.Limiter        // nil: no limit
	links    *feedbacklink.Signer // nil: links go straight to Tucao
	csp      string
	suppress func(ctx context.Context, kind, openid string) (bool, error)

	inflight   keySet
	unrecorded outcomes

	mu         sync.Mutex
	kv         jetstream.KeyValue
	subs       []*bus.Subscription
	hardCtx    context.Context
	hardCancel context.CancelFunc
	stopping   bool           // Stop began: new deliveries are handed back
	handling   sync.WaitGroup // deliveries being handled
}

// New checks the configuration and builds the service; Start begins
// consuming.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil {
		return nil, errors.New("notifier: a Bus is required")
	}
	if deps.Sender == nil {
		return nil, errors.New("notifier: a Sender (the WeChat client) is required")
	}
	s := &Service{
		cfg: cfg, bus: deps.Bus, sender: deps.Sender, log: deps.Logger, now: deps.Now, suppress: deps.Suppress,
		metrics:    newMetrics(deps.Registerer),
		templates:  map[string]*messageTemplate{},
		csp:        pageCSP(cfg.TucaoURL),
		inflight:   keySet{m: map[string]struct{}{}},
		unrecorded: outcomes{m: map[string]events.Notification{}},
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	for kind, text := range cfg.Templates.byKind() {
		t, err := parseTemplate(kind, text)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		s.templates[kind] = t
	}
	if w := cfg.Templates.WaitEstimated; w == "" || w == DefaultWaitEstimated {
		next, err := parseTemplate(events.NotifyWaitEstimated, DefaultWaitEstimatedNext)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		s.waitNext = next
	}
	s.names = newNicknames(s.sender, cfg.NicknameTTL, s.now, s.log)
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	if cfg.PublicURL != "" && cfg.TucaoProductID != "" {
		keys, err := feedbacklink.NewKeys(cfg.FeedbackLinkSecret, cfg.WeChatSecret)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		s.links = feedbacklink.NewSigner(keys, cfg.FeedbackLinkTTL, s.now)
	}
	return s, nil
}

// Routes registers the feedback link page (GET /feedback/{token}) and the
// default avatar it hands to Tucao (GET /feedback/avatar.png).
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+avatarPath, serveAvatar)
	mux.HandleFunc("GET "+feedbackPathPrefix+"{token}", s.serveFeedback)
}

// ErrStarted is returned by Start on a running service.
var ErrStarted = errors.New("notifier: already started")

// Start creates the streams it reads and writes (KEFU_WECHAT, KEFU_KF,
// KEFU_NOTIFY and KEFU_DLQ for dead letters) and the kefu_notified bucket
// if needed, and subscribes to the two durable consumers. It does not block.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs != nil {
		return ErrStarted
	}
	if err := s.bus.EnsureStreams(ctx, events.StreamNotify, events.StreamWeChat, events.StreamKF, events.StreamDLQ); err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	kv, err := s.bus.KeyValue(ctx, bus.BucketNotified)
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	s.kv = kv
	s.stopping = false
	// The consumers live until Stop closes them, not until the start-up
	// context ends. hardCtx bounds the handlers: it is cancelled only when
	// Stop runs out of time.
	life := context.WithoutCancel(ctx)
	s.hardCtx, s.hardCancel = context.WithCancel(life)
	for _, c := range []struct {
		spec   bus.ConsumerSpec
		handle bus.Handler
	}{
		{s.spec(events.StreamWeChat, DurableSessions, events.SubjectSessionAll), s.guard(s.handleSession)},
		{s.spec(events.StreamKF, DurableWait, events.SubjectWaitEstimated), s.guard(s.handleWait)},
	} {
		sub, err := s.bus.Subscribe(life, c.spec, c.handle)
		if err != nil {
			for _, started := range s.subs {
				started.Close()
			}
			s.subs = nil
			s.hardCancel()
			return fmt.Errorf("notifier: %w", err)
		}
		s.subs = append(s.subs, sub)
	}
	s.log.Info("notifier started", zap.String("instance", s.cfg.Instance),
		zap.Bool("feedback_login", s.links != nil), zap.Float64("rate_limit", s.cfg.RateLimit))
	return nil
}

func (s *Service) spec(stream, durable, filter string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Role: Role, Stream: stream, Durable: durable, FilterSubject: filter,
		// A new consumer starts at the end of the stream: replaying weeks
		// of session events would message customers about the past.
		DeliverNew:    true,
		MaxAckPending: s.cfg.MaxAckPending,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    s.cfg.MaxDeliver,
		Backoff:       s.cfg.Backoff,
		Concurrency:   s.cfg.Concurrency,
	}
}

// Stop stops taking events and waits for the ones being handled: a send
// in progress completes, is recorded and acknowledged. Events delivered from
// then on are handed back at once (a delayed redelivery) and go to another
// process, or to this one after a restart, which sends each exactly once.
// When ctx ends first, sends in progress are cancelled; their outcome is
// unknown and recorded as failed (see the package doc).
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	subs, cancel := s.subs, s.hardCancel
	s.subs = nil
	s.stopping = true
	s.mu.Unlock()
	if subs == nil {
		return nil
	}
	// Handlers finish before the subscriptions close, so that their acks
	// still reach JetStream: a closing subscriber drops them.
	idle := make(chan struct{})
	go func() {
		s.handling.Wait()
		close(idle)
	}()
	var stopErr error
	select {
	case <-idle:
	case <-ctx.Done():
		stopErr = fmt.Errorf("notifier stop: %w", ctx.Err())
		cancel()
		<-idle
	}
	var errs []error
	for _, sub := range subs {
		errs = append(errs, sub.Close())
	}
	cancel()
	return errors.Join(stopErr, errors.Join(errs...))
}

// errStopping hands a delivery back while the service stops.
var errStopping = errors.New("notifier stopping: handed back for redelivery")

// guard counts the deliveries being handled, so Stop can wait for them,
// and hands new ones back once Stop began.
func (s *Service) guard(handle bus.Handler) bus.Handler {
	return func(ctx context.Context, d *bus.Delivery) error {
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			if d.NumDelivered >= uint64(s.cfg.MaxDeliver) {
				// An error now would dead-letter the event; holding it
				// until the subscription closes leaves it unacknowledged,
				// and JetStream redelivers it after AckWait.
				<-ctx.Done()
			}
			return errStopping
		}
		s.handling.Add(1)
		s.mu.Unlock()
		defer s.handling.Done()
		return handle(ctx, d)
	}
}

// handlerContext bounds one event's handling. It is not derived from the
// delivery's context, which the subscriber cancels when it closes: a send
// that started is allowed to finish and be recorded.
func (s *Service) handlerContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.hardCtx, s.cfg.SendTimeout)
}

// sessionNotice is a session event reduced to what the messages need.
type sessionNotice struct {
	kind        string
	meta        events.Meta
	openid      string
	account     string
	fromAccount string
	// session is the session a close ends, named in the feedback link.
	session *feedbacklink.Session
}

func (s *Service) handleSession(_ context.Context, d *bus.Delivery) error {
	ev, err := events.DecodeSubject(d.Subject, d.Data)
	if err != nil {
		return bus.Permanent(fmt.Errorf("decode %s: %w", d.Subject, err))
	}
	var n sessionNotice
	switch e := ev.(type) {
	case events.SessionCreated:
		n = sessionNotice{kind: events.NotifySessionCreated, meta: e.Meta, openid: e.OpenID, account: e.KfAccount}
	case events.SessionSwitched:
		n = sessionNotice{kind: events.NotifySessionSwitched, meta: e.Meta, openid: e.OpenID, account: e.ToKfAccount, fromAccount: e.FromKfAccount}
	case events.SessionClosed:
		n = sessionNotice{kind: events.NotifySessionClosed, meta: e.Meta, openid: e.OpenID, account: e.KfAccount, session: feedbacklink.ClosedSession(e)}
	default:
		return nil // a session subject this version does not announce
	}
	if n.openid == "" {
		return bus.Permanent(fmt.Errorf("%s without openid", d.Subject))
	}
	cause, err := causeID(d)
	if err != nil {
		return err
	}
	ctx, cancel := s.handlerContext()
	defer cancel()
	received := receivedAt(n.meta, d)
	at := n.meta.OccurredAt
	if at.IsZero() {
		at = received
	}
	// The session state is kept even when the message is not sent: it is
	// what silences wait messages (so it is not needed without them).
	if s.cfg.enabled(events.NotifyWaitEstimated) {
		if err := s.recordSession(ctx, n.openid, n.kind, at); err != nil {
			return s.retry(n.kind, err)
		}
	}
	if !s.cfg.enabled(n.kind) {
		s.count(n.kind, outcomeSkipped)
		return nil
	}
	if age := s.now().Sub(received); age > s.cfg.MaxEventAge {
		s.log.Info("session event too old to announce", zap.String("kind", n.kind), zap.String("cause_key", causeKey(cause)), zap.Duration("age", age))
		s.count(n.kind, outcomeSkipped)
		return nil
	}
	if quiet, err := s.suppressed(ctx, n.kind, n.openid); err != nil || quiet {
		return err
	}
	return s.notify(ctx, d, job{
		kind: n.kind, cause: cause, openid: n.openid, appID: n.meta.AppID, receivedAt: received,
		prepare: func(ctx context.Context) (message, error) { return s.sessionMessage(ctx, n), nil },
	})
}

func (s *Service) sessionMessage(ctx context.Context, n sessionNotice) message {
	t := s.templates[n.kind]
	values := map[string]string{"kf_account": n.account, "from_kf_account": n.fromAccount}
	// getkflist only when the text names an agent.
	if t.uses("nickname") {
		values["nickname"] = s.names.Lookup(ctx, n.account)
	}
	if t.uses("from_nickname") {
		values["from_nickname"] = s.names.Lookup(ctx, n.fromAccount)
	}
	m := message{}
	if s.cfg.SendAsAgent {
		m.asAgent = n.account
	}
	if n.kind == events.NotifySessionClosed && t.uses("feedback_url") {
		link, redacted := s.feedbackURL(n.openid, n.session)
		values["feedback_url"] = redacted
		m.recorded = t.render(values)
		values["feedback_url"] = link
	}
	m.text = t.render(values)
	if m.recorded == "" {
		m.recorded = m.text
	}
	return m
}

func (s *Service) handleWait(_ context.Context, d *bus.Delivery) error {
	const kind = events.NotifyWaitEstimated
	est, err := events.Decode[events.WaitEstimated](d.Data)
	if err != nil {
		return bus.Permanent(fmt.Errorf("decode %s: %w", d.Subject, err))
	}
	if est.OpenID == "" {
		return bus.Permanent(fmt.Errorf("%s without openid", d.Subject))
	}
	cause, err := causeID(d)
	if err != nil {
		return err
	}
	if !s.cfg.enabled(kind) {
		s.count(kind, outcomeSkipped)
		return nil
	}
	received := receivedAt(est.Meta, d)
	if est.OccurredAt.IsZero() {
		est.OccurredAt = received
	}
	ctx, cancel := s.handlerContext()
	defer cancel()
	if quiet, err := s.suppressed(ctx, kind, est.OpenID); err != nil || quiet {
		return err
	}
	// Most estimates are held back; a read decides that without writing.
	// A redelivery goes through the claim all the same: it may be the
	// one that finds a marker left by a process that died while sending.
	if d.NumDelivered <= 1 {
		st, _, err := s.loadCustomer(ctx, est.OpenID)
		if err != nil {
			return s.retry(kind, err)
		}
		if send, reason := decideWait(st, est, s.now(), s.cfg.Wait); !send {
			s.count(kind, waitOutcome(reason))
			return nil
		}
	}
	return s.notify(ctx, d, job{
		kind: kind, cause: cause, openid: est.OpenID, appID: est.AppID, receivedAt: received,
		prepare: func(ctx context.Context) (message, error) { return s.waitMessage(ctx, est) },
	})
}

// waitMessage decides again, now under compare-and-set on the customer's
// record, and reserves the message there before it is sent: two processes
// with two estimates for one customer cannot both send.
func (s *Service) waitMessage(ctx context.Context, est events.WaitEstimated) (message, error) {
	for range 8 {
		st, rev, err := s.loadCustomer(ctx, est.OpenID)
		if err != nil {
			return message{}, err
		}
		now := s.now()
		if send, reason := decideWait(st, est, now, s.cfg.Wait); !send {
			return message{skip: reason}, nil
		}
		next := st
		next.WaitSentAt, next.WaitSeconds = now, est.WaitSeconds
		newRev, err := s.storeCustomer(ctx, est.OpenID, next, rev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return message{}, err
		}
		tmpl := s.templates[events.NotifyWaitEstimated]
		if est.Position == 1 && s.waitNext != nil {
			tmpl = s.waitNext
		}
		text := tmpl.render(waitValues(est))
		return message{text: text, recorded: text, release: func(ctx context.Context) {
			// Give the reservation back so the retry is not throttled by
			// a message that was never sent.
			if _, err := s.storeCustomer(ctx, est.OpenID, st, newRev); err != nil {
				s.log.Warn("release wait reservation", zap.Error(err))
			}
		}}, nil
	}
	return message{}, errors.New("customer record: too many concurrent updates")
}

func waitValues(est events.WaitEstimated) map[string]string {
	ahead := max(est.Position-1, 0)
	return map[string]string{
		"position":    fmt.Sprint(est.Position),
		"ahead":       fmt.Sprint(ahead),
		"minutes":     fmt.Sprint(ceilMinutes(est.WaitSeconds)),
		"p90_minutes": fmt.Sprint(ceilMinutes(max(est.WaitP90Seconds, est.WaitSeconds))),
	}
}

func ceilMinutes(seconds int64) int64 {
	return max(1, (seconds+59)/60)
}

func waitOutcome(reason string) string {
	switch reason {
	case waitTooSoon, waitUnchanged:
		return outcomeThrottled
	}
	return outcomeSkipped
}

// suppressed asks Deps.Suppress and counts a suppressed message as
// skipped. A failed read is returned as a retry: nothing is sent that
// queuecare may already have said.
func (s *Service) suppressed(ctx context.Context, kind, openid string) (bool, error) {
	if s.suppress == nil {
		return false, nil
	}
	quiet, err := s.suppress(ctx, kind, openid)
	if err != nil {
		return false, s.retry(kind, fmt.Errorf("read customer state: %w", err))
	}
	if quiet {
		s.count(kind, outcomeSkipped)
	}
	return quiet, nil
}

// job is one message to send for one cause event.
type job struct {
	kind, cause, openid, appID string
	receivedAt                 time.Time
	// prepare runs once the cause is claimed: it renders the message, or
	// decides not to send it after all.
	prepare func(ctx context.Context) (message, error)
}

type message struct {
	text     string // what the customer gets
	recorded string // the same with secrets (the feedback token) blanked
	asAgent  string
	skip     string                    // set: do not send, for this reason
	release  func(ctx context.Context) // undoes reservations when not sent and retried
}

// notify is the exactly-once core (see the package doc): claim the cause,
// send, publish the outcome, record it.
func (s *Service) notify(ctx context.Context, d *bus.Delivery, j job) error {
	key := causeKey(j.cause)
	// Wait for the rate limiter before claiming: a claim is "sending", and
	// a process that dies holding one loses that message (at-most-once),
	// so claims must be held only for the send itself, not for the queue.
	if s.limiter != nil {
		if err := s.limiter.Wait(ctx); err != nil {
			return s.retry(j.kind, fmt.Errorf("rate limit: %w", err))
		}
	}
	rev, existing, err := s.claim(ctx, key, j)
	if err != nil {
		return s.retry(j.kind, err)
	}
	if existing != nil {
		return s.settle(ctx, j, key, existing)
	}
	s.inflight.add(j.cause)
	defer s.inflight.remove(j.cause)

	msg, err := j.prepare(ctx)
	if err != nil {
		s.unclaim(key, rev)
		return s.retry(j.kind, err)
	}
	if msg.skip != "" {
		if err := s.finishSkipped(key, rev, j, msg.skip); err != nil {
			s.log.Warn("record skipped notification", zap.Error(err), zap.String("cause_key", key))
			s.unclaim(key, rev)
		}
		s.count(j.kind, waitOutcome(msg.skip))
		return nil
	}
	release := func() {
		if msg.release != nil {
			rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
			defer cancel()
			msg.release(rctx)
		}
		s.unclaim(key, rev)
	}
	sendErr := s.sender.SendText(ctx, j.openid, msg.text, msg.asAgent)
	now := s.now()
	n := events.Notification{
		Meta:   events.Meta{AppID: j.appID, OccurredAt: now, ReceivedAt: now},
		OpenID: j.openid, Kind: j.kind, CauseEventID: j.cause, Text: msg.recorded, Outcome: events.OutcomeSent,
	}
	switch wechat.Classify(sendErr) {
	case wechat.VerdictDone:
		s.metrics.latency.WithLabelValues(j.kind).Observe(now.Sub(j.receivedAt).Seconds())
	case wechat.VerdictRetry:
		// Certainly not sent: however often it fails, trying again cannot
		// message the customer twice. The bus redelivers with capped
		// back-off for as long as it takes; session notices past
		// MaxEventAge are then skipped as too old.
		release()
		return s.retry(j.kind, sendErr)
	case wechat.VerdictUnknown:
		n.Outcome, n.ErrMsg = events.OutcomeFailed, unknownErrMsg(sendErr)
	default: // refused
		n.Outcome = events.OutcomeFailed
		n.ErrCode, n.ErrMsg = errCode(sendErr)
	}
	if n.Outcome == events.OutcomeFailed {
		s.log.Warn("notification failed", zap.String("kind", j.kind), zap.String("cause_key", key),
			zap.Int("errcode", n.ErrCode), zap.String("errmsg", n.ErrMsg))
	}
	if err := s.record(key, rev, n); err != nil {
		return s.retry(j.kind, err)
	}
	s.count(j.kind, n.Outcome)
	return nil
}

// claim creates the cause's "sending" marker; existing is the record found
// instead when another delivery got there first.
func (s *Service) claim(ctx context.Context, key string, j job) (rev uint64, existing jetstream.KeyValueEntry, err error) {
	marker, err := encodeRecord(causeRecord{State: stateSending, Cause: j.cause, Kind: j.kind, Owner: s.cfg.Instance, At: s.now()})
	if err != nil {
		return 0, nil, err
	}
	for range 3 {
		rev, err = s.kv.Create(ctx, key, marker)
		if err == nil {
			return rev, nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil, fmt.Errorf("claim %s: %w", key, err)
		}
		existing, err = s.kv.Get(ctx, key)
		if err == nil {
			return 0, existing, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, nil, fmt.Errorf("read claim %s: %w", key, err)
		}
		// Released between our create and get: try again.
	}
	return 0, nil, fmt.Errorf("claim %s: key keeps changing", key)
}

// unclaim removes our marker so a redelivery starts afresh; only used when
// nothing was sent. If it fails, the marker turns stale and the cause is
// recorded as failed with an unknown outcome: at most once still holds.
func (s *Service) unclaim(key string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
	defer cancel()
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		s.log.Warn("release notification claim", zap.Error(err))
	}
}

// settle handles a cause that already has a record.
func (s *Service) settle(ctx context.Context, j job, key string, entry jetstream.KeyValueEntry) error {
	rec, err := decodeRecord(entry.Value())
	if err != nil {
		// Unreadable: someone handled it. Never risk a second message.
		s.log.Error("unreadable notification record; not sending", zap.Error(err), zap.String("cause_key", key))
		s.count(j.kind, outcomeDuplicate)
		return nil
	}
	if rec.final() {
		s.count(j.kind, outcomeDuplicate)
		return nil
	}
	// A "sending" marker.
	if n, ok := s.unrecorded.get(j.cause); ok {
		// This process sent it but could not record it: finish that.
		if err := s.record(key, entry.Revision(), n); err != nil {
			return s.retry(j.kind, err)
		}
		s.count(j.kind, n.Outcome)
		return nil
	}
	if s.inflight.has(j.cause) {
		return s.retry(j.kind, errInFlight)
	}
	if age := s.now().Sub(rec.At); age < s.cfg.staleAfter() {
		return s.retry(j.kind, fmt.Errorf("%w (by %s, %v ago)", errClaimed, rec.Owner, age.Round(time.Millisecond)))
	}
	n, err := s.recoverCrashed(ctx, j, key, entry.Revision(), rec)
	if err != nil {
		return s.retry(j.kind, err)
	}
	s.count(j.kind, n.Outcome)
	return nil
}

// unknownOutcome is the errmsg of a message whose sender died between the
// claim and the record.
const unknownOutcome = "unknown outcome (crash during send)"

// recoverCrashed settles a marker left by a process that died after
// claiming: the message may or may not have reached WeChat, which has no
// idempotency key, so it is not sent again (at most once) and recorded as
// failed — unless the dead process had already published the outcome,
// which JetStream's de-duplication reveals.
func (s *Service) recoverCrashed(ctx context.Context, j job, key string, rev uint64, rec causeRecord) (events.Notification, error) {
	now := s.now()
	n := events.Notification{
		Meta:   events.Meta{AppID: j.appID, OccurredAt: now, ReceivedAt: now},
		OpenID: j.openid, Kind: j.kind, CauseEventID: j.cause, Outcome: events.OutcomeFailed, ErrMsg: unknownOutcome,
	}
	pub, err := s.publishOutcome(ctx, n)
	if err != nil {
		return n, err
	}
	if pub.Duplicate {
		if orig, err := s.loadOutcome(ctx, pub.Sequence); err == nil {
			n = orig
		} else {
			s.log.Warn("read published outcome", zap.Error(err), zap.Uint64("seq", pub.Sequence))
		}
	}
	s.log.Warn("settled a notification left by a stopped process", zap.String("cause_key", key),
		zap.String("owner", rec.Owner), zap.String("outcome", n.Outcome), zap.String("errmsg", n.ErrMsg))
	final, err := encodeRecord(causeRecord{State: n.Outcome, Cause: j.cause, Kind: j.kind, Owner: s.cfg.Instance, At: now,
		ErrCode: n.ErrCode, ErrMsg: n.ErrMsg, Seq: pub.Sequence})
	if err != nil {
		return n, err
	}
	if _, err := s.kv.Update(ctx, key, final, rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return n, fmt.Errorf("record recovered %s: %w", key, err)
	}
	return n, nil
}

// record publishes the outcome event and then turns the marker into the
// final record. Publishing first means a final record always has its
// event; a crash in between leaves a marker whose recovery finds the event
// through de-duplication. When either step fails, the outcome is kept in
// memory for the redelivery.
func (s *Service) record(key string, rev uint64, n events.Notification) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
	defer cancel()
	pub, err := s.publishOutcome(ctx, n)
	if err != nil {
		s.unrecorded.put(n)
		return err
	}
	final, err := encodeRecord(causeRecord{State: n.Outcome, Cause: n.CauseEventID, Kind: n.Kind, Owner: s.cfg.Instance,
		At: s.now(), ErrCode: n.ErrCode, ErrMsg: n.ErrMsg, Seq: pub.Sequence})
	if err != nil {
		return err
	}
	if _, err := s.kv.Update(ctx, key, final, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Another process took our marker for a dead one's; its
			// outcome event was de-duplicated against ours.
			s.log.Warn("notification record taken over by another process", zap.String("cause_key", key))
			s.unrecorded.remove(n.CauseEventID)
			return nil
		}
		s.unrecorded.put(n)
		return fmt.Errorf("record %s: %w", key, err)
	}
	s.unrecorded.remove(n.CauseEventID)
	return nil
}

func (s *Service) finishSkipped(key string, rev uint64, j job, reason string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
	defer cancel()
	rec, err := encodeRecord(causeRecord{State: stateSkipped, Cause: j.cause, Kind: j.kind, Owner: s.cfg.Instance, At: s.now(), ErrMsg: reason})
	if err != nil {
		return err
	}
	_, err = s.kv.Update(ctx, key, rec, rev)
	return err
}

// OutcomeID is the ce-id (and Nats-Msg-Id) of the outcome event of the
// cause event with ce-id causeID: deterministic, so the outcome is itself
// published once.
func OutcomeID(causeID string) string { return "notify-" + causeID }

func (s *Service) publishOutcome(ctx context.Context, n events.Notification) (bus.Published, error) {
	pub, err := s.bus.Publish(ctx, n, bus.Envelope{ID: OutcomeID(n.CauseEventID), Source: "kefu/notifier", Time: n.OccurredAt})
	if err != nil {
		return pub, fmt.Errorf("publish outcome (%s): %w", causeKey(n.CauseEventID), err)
	}
	return pub, nil
}

func (s *Service) loadOutcome(ctx context.Context, seq uint64) (events.Notification, error) {
	stream, err := s.bus.JS.Stream(ctx, events.StreamNotify)
	if err != nil {
		return events.Notification{}, err
	}
	msg, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return events.Notification{}, err
	}
	return events.Decode[events.Notification](msg.Data)
}

// recordSession applies a session event to the customer's record.
func (s *Service) recordSession(ctx context.Context, openid, kind string, at time.Time) error {
	for range 8 {
		st, rev, err := s.loadCustomer(ctx, openid)
		if err != nil {
			return err
		}
		next, changed := applySession(st, kind, at)
		if !changed {
			return nil
		}
		if _, err := s.storeCustomer(ctx, openid, next, rev); !errors.Is(err, errConflict) {
			return err
		}
	}
	return errors.New("customer record: too many concurrent updates")
}

var (
	errConflict = errors.New("changed concurrently")
	errInFlight = errors.New("being sent by this process")
	errClaimed  = errors.New("being sent by another process")
)

// loadCustomer returns the customer's record and its revision (0: none).
func (s *Service) loadCustomer(ctx context.Context, openid string) (customerState, uint64, error) {
	var st customerState
	e, err := s.kv.Get(ctx, customerKey(openid))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, 0, nil
	}
	if err != nil {
		return st, 0, fmt.Errorf("read customer record: %w", err)
	}
	if err := decodeJSON(e.Value(), &st); err != nil {
		// A record we cannot read is replaced rather than blocking the customer.
		s.log.Warn("unreadable customer record replaced", zap.Error(err))
		return customerState{}, e.Revision(), nil
	}
	return st, e.Revision(), nil
}

// storeCustomer writes the record if it is still at rev; errConflict
// otherwise.
func (s *Service) storeCustomer(ctx context.Context, openid string, st customerState, rev uint64) (uint64, error) {
	data, err := encodeJSON(st)
	if err != nil {
		return 0, err
	}
	key := customerKey(openid)
	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, errConflict
		}
	} else {
		newRev, err = s.kv.Update(ctx, key, data, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, errConflict
		}
	}
	if err != nil {
		return 0, fmt.Errorf("write customer record: %w", err)
	}
	return newRev, nil
}

// retry counts a try that will be repeated and returns the error that
// makes the bus redeliver after a delay.
func (s *Service) retry(kind string, err error) error {
	s.count(kind, outcomeRetry)
	return err
}

func (s *Service) count(kind, outcome string) {
	s.metrics.messages.WithLabelValues(kind, outcome).Inc()
}

// causeID is the event's ce-id, the idempotency key of its message.
func causeID(d *bus.Delivery) (string, error) {
	if id := d.ID(); id != "" {
		return id, nil
	}
	if id := d.Header[events.HeaderMsgID]; id != "" {
		return id, nil
	}
	// Without an id a replay cannot be recognised; sending could repeat.
	return "", bus.Permanent(fmt.Errorf("%s at stream sequence %d has no ce-id", d.Subject, d.StreamSeq))
}

func receivedAt(m events.Meta, d *bus.Delivery) time.Time {
	switch {
	case !m.ReceivedAt.IsZero():
		return m.ReceivedAt
	case !m.OccurredAt.IsZero():
		return m.OccurredAt
	}
	return d.Published
}

// keySet is the set of causes this process is sending now.
type keySet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func (k *keySet) add(key string) { k.mu.Lock(); k.m[key] = struct{}{}; k.mu.Unlock() }

func (k *keySet) remove(key string) { k.mu.Lock(); delete(k.m, key); k.mu.Unlock() }

func (k *keySet) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[key]
	return ok
}

// outcomes are sends whose outcome could not be published or recorded
// yet, by cause; the redelivery of the cause finishes the job.
type outcomes struct {
	mu sync.Mutex
	m  map[string]events.Notification
}

func (o *outcomes) put(n events.Notification) {
	o.mu.Lock()
	o.m[n.CauseEventID] = n
	o.mu.Unlock()
}

func (o *outcomes) get(cause string) (events.Notification, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.m[cause]
	return n, ok
}

func (o *outcomes) remove(cause string) { o.mu.Lock(); delete(o.m, cause); o.mu.Unlock() }

// unknownErrMsg is the errmsg of a message that may or may not have
// reached the customer: "unknown outcome: <reason>: <error>", the reason
// one of wechat.UnknownReasons (the labels of
// kefu_wechat_api_unknown_outcome_total).
func unknownErrMsg(err error) string {
	return "unknown outcome: " + wechat.UnknownReason(err) + ": " + err.Error()
}

func errCode(err error) (int, string) {
	var apiErr *wechat.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrCode, strings.TrimSpace(apiErr.ErrMsg)
	}
	return 0, err.Error()
}
