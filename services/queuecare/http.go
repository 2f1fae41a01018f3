package queuecare

import (
	"github.com/kefu-io/kefu/internal/customers"

	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/httpapi"
)

// Routes registers GET /api/kf/customers/{openid} (a customer's state) and
// GET /api/kf/stale (the last stale-session sweep). Every replica serves
// both from kefu_customers.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/kf/customers/{openid}", s.serveCustomer)
	mux.HandleFunc("GET /api/kf/stale", s.serveStale)
}

// unavailableRetry is the Retry-After of a 503 for a bucket that did not
// answer: the bus reconnects within seconds, and a poller should not make
// it worse by asking at once.
const unavailableRetry = 5 * time.Second

// startRetry is the Retry-After of a 503 before the service started: it
// starts with the process, within seconds.
const startRetry = 5 * time.Second

func (s *Service) serveCustomer(w http.ResponseWriter, r *http.Request) {
	if s.states == nil {
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "queue care not started", httpapi.Type(httpapi.NotReady), httpapi.RetryAfter(startRetry))
		return
	}
	openid := r.PathValue("openid")
	st, err := s.states.Get(r.Context(), openid)
	switch {
	case errors.Is(err, customers.ErrInvalidOpenID):
		httpapi.WriteProblem(w, http.StatusBadRequest, "malformed openid: at most 128 letters, digits, '-' and '_'", httpapi.Param("openid"))
	case errors.Is(err, customers.ErrUnknownCustomer):
		httpapi.WriteProblem(w, http.StatusNotFound, "unknown customer")
	case err != nil:
		s.log.Error("read customer state", zap.Error(err))
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "customer state unavailable", httpapi.RetryAfter(unavailableRetry))
	default:
		// The notifier's session mark is its bookkeeping, not part of the
		// customer's state as docs/openapi.yaml defines the answer.
		st.LastSession = customers.SessionMark{}
		httpapi.WriteJSON(w, http.StatusOK, st)
	}
}

func (s *Service) serveStale(w http.ResponseWriter, r *http.Request) {
	if s.states == nil {
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "queue care not started", httpapi.Type(httpapi.NotReady), httpapi.RetryAfter(startRetry))
		return
	}
	rep, err := s.LastStaleReport(r.Context())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// The first sweep comes within one sweep interval.
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "no sweep yet", httpapi.Type(httpapi.NotReady), httpapi.RetryAfter(s.cfg.SweepInterval))
	case err != nil:
		s.log.Error("read stale report", zap.Error(err))
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "stale report unavailable", httpapi.RetryAfter(unavailableRetry))
	default:
		httpapi.WriteJSON(w, http.StatusOK, rep)
	}
}
