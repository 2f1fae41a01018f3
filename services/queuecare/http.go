package queuecare

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Routes registers GET /api/kf/customers/{openid} (a customer's state) and
// GET /api/kf/stale (the last stale-session sweep). Every replica serves
// both from kefu_customers.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/kf/customers/{openid}", s.serveCustomer)
	mux.HandleFunc("GET /api/kf/stale", s.serveStale)
}

func (s *Service) serveCustomer(w http.ResponseWriter, r *http.Request) {
	if s.states == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"queue care not started"})
		return
	}
	openid := r.PathValue("openid")
	st, err := s.states.Get(r.Context(), openid)
	switch {
	case errors.Is(err, ErrInvalidOpenID):
		writeJSON(w, http.StatusBadRequest, apiError{"malformed openid: letters, digits, '-' and '_' only"})
	case errors.Is(err, ErrUnknownCustomer):
		writeJSON(w, http.StatusNotFound, apiError{"unknown customer"})
	case err != nil:
		s.log.Error("read customer state", zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, apiError{"customer state unavailable"})
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *Service) serveStale(w http.ResponseWriter, r *http.Request) {
	if s.states == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"queue care not started"})
		return
	}
	rep, err := s.LastStaleReport(r.Context())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		writeJSON(w, http.StatusServiceUnavailable, apiError{"no sweep yet"})
	case err != nil:
		s.log.Error("read stale report", zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, apiError{"stale report unavailable"})
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"encode"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
