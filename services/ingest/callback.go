package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Routes registers the callback endpoint.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.Handle("/wechat/callback", s)
}

// ServeHTTP answers GET (URL verification) and POST (messages and events).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.verify(w, r)
	case http.MethodPost:
		s.callback(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.reject(w, reasonMethod, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (s *Service) verify(w http.ResponseWriter, r *http.Request) {
	if !s.allowedSource(w, r) {
		return
	}
	q := r.URL.Query()
	if !s.fresh(w, q) {
		return
	}
	echo, err := s.codec.VerifyURL(q)
	if err != nil {
		s.rejectErr(w, err)
		return
	}
	if s.sigs != nil {
		// A verification URL holds a signature a POST could reuse; it is
		// spent on the verification.
		if !s.spendSignature(w, r.Context(), q, []byte("GET\n"+echo)) {
			return
		}
	}
	s.metrics.verified.Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, echo)
}

func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	if !s.allowedSource(w, r) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBody+1))
	if err != nil {
		s.reject(w, reasonRead, http.StatusBadRequest, "cannot read body")
		return
	}
	if int64(len(body)) > s.cfg.MaxBody {
		s.reject(w, reasonTooLarge, http.StatusRequestEntityTooLarge, "body over "+strconv.FormatInt(s.cfg.MaxBody, 10)+" bytes")
		return
	}
	q := r.URL.Query()
	if !s.fresh(w, q) {
		return
	}
	plain, encrypted, err := s.codec.Open(q, body)
	if err != nil {
		s.rejectErr(w, err)
		return
	}
	cb, err := wechat.ParseCallback(plain)
	if err != nil {
		s.rejectErr(w, err)
		return
	}
	// In plain mode the message is what the signature fails to cover; with
	// the migration setting an encrypted callback spends its timestamp and
	// nonce too, or its URL would sign a forged plaintext body.
	if s.sigs != nil && !s.spendSignature(w, r.Context(), q, plain) {
		return
	}
	ev, id := Event(cb, s.cfg.AppID, received)
	kind := kindOf(cb)

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	start := time.Now()
	pub, err := s.pub.Publish(ctx, ev, bus.Envelope{ID: id, Source: s.source, Time: received})
	cancel()
	s.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	if errors.Is(err, bus.ErrTooLarge) {
		// Retrying cannot make it fit: refuse it, so WeChat stops.
		s.metrics.callbacks.WithLabelValues(kind, "too_large").Inc()
		s.log.Warn("callback refused: its event is larger than the bus accepts", zap.String("kind", kind), zap.Int("body_bytes", len(body)))
		s.reject(w, reasonEventTooLarge, http.StatusRequestEntityTooLarge, "event too large for the bus")
		return
	}
	if err != nil {
		s.metrics.callbacks.WithLabelValues(kind, "publish_failed").Inc()
		s.log.Error("publish callback failed; answering 503 so WeChat retries", zap.Error(err), zap.String("kind", kind))
		httpapi.SetRetryAfter(w, unavailableRetry)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	outcome := "published"
	if pub.Duplicate {
		outcome = "duplicate"
	}
	s.metrics.callbacks.WithLabelValues(kind, outcome).Inc()
	s.log.Debug("callback stored", zap.String("event_id", id), zap.String("kind", kind),
		zap.Uint64("stream_seq", pub.Sequence), zap.Bool("duplicate", pub.Duplicate))

	reply, transferred := s.reply(r.Context(), cb)
	if transferred != nil && !s.publishJoined(w, r.Context(), cb, ev, *transferred, received) {
		return
	}
	if reply == nil {
		io.WriteString(w, wechat.SuccessReply)
		return
	}
	if encrypted {
		env, _, err := s.codec.Seal(reply, strconv.FormatInt(s.now().Unix(), 10), nonce())
		if err != nil {
			// The event is stored; an empty answer is always valid.
			s.log.Error("seal reply", zap.Error(err))
			io.WriteString(w, wechat.SuccessReply)
			return
		}
		reply = env
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Write(reply)
}

// fresh checks timestamp against the freshness window, answering 401
// when it is missing or outside it.
func (s *Service) fresh(w http.ResponseWriter, q url.Values) bool {
	ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if err == nil {
		now := s.now().Unix()
		window := int64(s.cfg.Window / time.Second)
		if ts >= now-window && ts <= now+window {
			return true
		}
	}
	s.reject(w, reasonStale, http.StatusUnauthorized, "timestamp missing or outside the freshness window")
	return false
}

// spendSignature records that the request's signature carried message;
// it answers 401 when the signature was already used with another one, and
// 503 when the record cannot be made.
func (s *Service) spendSignature(w http.ResponseWriter, ctx context.Context, q url.Values, message []byte) bool {
	// The key is computed, not copied from the query: it is the one
	// canonical form of what the signature authenticates.
	key := wechat.Signature(s.cfg.Token, q.Get("timestamp"), q.Get("nonce"))
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	err := s.sigs.spend(ctx, key, message)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errSignatureReused):
		s.reject(w, reasonReplayedSignature, http.StatusUnauthorized, "signature already used with another body")
	default:
		s.log.Error("callback signature store unavailable; answering 503 so WeChat retries", zap.Error(err))
		httpapi.SetRetryAfter(w, unavailableRetry)
		s.reject(w, reasonSignatureStore, http.StatusServiceUnavailable, "temporarily unavailable")
	}
	return false
}

// transfer is a reply that hands the customer to 多客服: the agent it
// routes to ("" for any).
type transfer struct{ kf string }

// reply is the passive reply to a callback, nil for "success", and the
// transfer it makes, nil when it makes none.
func (s *Service) reply(ctx context.Context, cb *wechat.Callback) ([]byte, *transfer) {
	if !s.cfg.Transfer || cb.MsgType == "event" {
		return nil, nil
	}
	if s.gate != nil && s.gate.HoldTransfer(ctx, cb.FromUserName, cb.Content) {
		return nil, nil
	}
	kf := ""
	chosen := false
	if s.chooser != nil {
		var text string
		if text, kf, chosen = s.chooser.Choose(ctx, cb); chosen && text != "" {
			return wechat.TextReply(cb.FromUserName, cb.ToUserName, s.now().Unix(), text), nil
		}
	}
	if s.router != nil && !chosen {
		kf = s.router.Route(ctx, cb.FromUserName, cb.Content)
	}
	return wechat.TransferCustomerServiceReply(cb.FromUserName, cb.ToUserName, s.now().Unix(), kf), &transfer{kf: kf}
}

// publishJoined publishes kefu.wechat.kf.queue.joined for a message answered
// with transfer_customer_service (no WeChat API call: ingest saw the join
// itself). Like the message, it is stored before WeChat gets the answer:
// on failure the answer is 503 and WeChat's retry publishes it again (the
// message is then a duplicate, the join event de-duplicated by its id).
func (s *Service) publishJoined(w http.ResponseWriter, ctx context.Context, cb *wechat.Callback, msg events.Event, t transfer, received time.Time) bool {
	m, ok := msg.(events.MessageReceived)
	if !ok {
		return true
	}
	ev := events.QueueJoined{Meta: m.Meta, OpenID: m.OpenID, KfAccount: t.kf, MsgID: m.MsgID}
	id := "kf-joined-" + m.MsgID
	if m.MsgID == "" {
		id = "kf-joined-" + m.OpenID + "-" + strconv.FormatInt(cb.CreateTime, 10)
	}
	if len(id) > events.MaxIDLength {
		id = id[:events.MaxIDLength]
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	_, err := s.pub.Publish(ctx, ev, bus.Envelope{ID: id, Source: s.source, Time: received})
	cancel()
	if err != nil {
		s.metrics.callbacks.WithLabelValues(kindOf(cb), "publish_failed").Inc()
		s.log.Error("publish queue join failed; answering 503 so WeChat retries", zap.Error(err))
		httpapi.SetRetryAfter(w, unavailableRetry)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// unavailableRetry is the Retry-After of a callback answered 503 because
// the bus (or the local spool) could not take it now. WeChat retries on its
// own schedule (three times within about 15 s) whatever the header says; it
// is for other senders and for operators' tools: a bus reconnect or a spool
// drain takes seconds.
const unavailableRetry = 5 * time.Second

func (s *Service) rejectErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, wechat.ErrBadSignature):
		s.reject(w, reasonSignature, http.StatusUnauthorized, "bad signature")
	case errors.Is(err, wechat.ErrAppIDMismatch):
		s.reject(w, reasonAppID, http.StatusUnauthorized, "payload is not for this account")
	case errors.Is(err, wechat.ErrNoAESKey):
		s.reject(w, reasonNoAESKey, http.StatusBadRequest, "encrypted callback but KEFU_WECHAT_AES_KEY is not set")
	case errors.Is(err, wechat.ErrMalformed):
		s.reject(w, reasonMalformed, http.StatusBadRequest, "malformed callback")
	default:
		s.log.Error("callback rejected", zap.Error(err))
		s.reject(w, reasonInvalid, http.StatusBadRequest, "invalid callback")
	}
}

func (s *Service) reject(w http.ResponseWriter, reason string, status int, msg string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	http.Error(w, msg, status)
}

func nonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
