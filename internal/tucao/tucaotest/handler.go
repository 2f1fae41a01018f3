package tucaotest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

func (s *Server) handlePosts(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	now := s.clock.Now()
	s.times = append(s.times, now)
	// Date tells the time by the server's clock, as the real service's
	// does by its own: the client measures its clock skew from it.
	if s.omitDate {
		w.Header()["Date"] = nil // net/http adds none when the key is present
	} else {
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	}
	var fault FaultKind
	if len(s.faults) > 0 {
		fault, s.faults = s.faults[0], s.faults[1:]
	}
	slowDelay := s.slowDelay
	s.mu.Unlock()

	switch fault {
	case FaultServerError:
		writeError(w, http.StatusInternalServerError, tucao.StatusInternalError, "internal server error")
		return
	case FaultRateLimited:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, tucao.StatusRateLimited, "too many requests")
		return
	case FaultMalformedJSON:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte(`{"status":0,"message":null,"pagination":{"per_page":20,"next_page_url":null},"object":"post","data":[{"id":"15398533`))
		return
	case FaultSlow:
		timer := time.NewTimer(slowDelay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}

	if r.PathValue("product") != s.productID {
		writeError(w, http.StatusNotFound, tucao.StatusUnknownProduct, "product not found")
		return
	}
	if status, msg := s.checkAuth(r); status != tucao.StatusOK {
		writeError(w, http.StatusUnauthorized, status, msg)
		return
	}
	if retry, ok := s.admit(); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		writeError(w, http.StatusTooManyRequests, tucao.StatusRateLimited, "too many requests")
		return
	}
	q, err := parseQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, tucao.StatusInvalidParameter, err.Error())
		return
	}
	// Written without HTML escaping, as Tucao does: next_page_url keeps a
	// plain "&" rather than "\u0026".
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s.list(q)); err != nil {
		writeError(w, http.StatusInternalServerError, tucao.StatusInternalError, "encode response")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(body.Bytes())
}

// checkAuth validates Timestamp and Signature.
func (s *Server) checkAuth(r *http.Request) (status int, message string) {
	ts, sig := r.Header.Get("Timestamp"), r.Header.Get("Signature")
	if len(ts) != 10 || !isDigits(ts) {
		return tucao.StatusMissingAuth, "Timestamp header must be a 10-digit unix time"
	}
	if len(sig) != 32 {
		return tucao.StatusMissingAuth, "Signature header must be a 32-character md5 hex"
	}
	sec, _ := strconv.ParseInt(ts, 10, 64)
	s.mu.Lock()
	now := s.clock.Now()
	s.mu.Unlock()
	if diff := now.Sub(time.Unix(sec, 0)); diff > s.tolerance || diff < -s.tolerance {
		return tucao.StatusStaleTimestamp, "Timestamp expired"
	}
	want := tucao.Sign(ts, s.secret)
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return tucao.StatusBadSignature, "Signature mismatch"
	}
	return tucao.StatusOK, ""
}

// admit applies the sliding-window rate limit; when it refuses, it says
// how long until a slot frees.
func (s *Server) admit() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rateLimit <= 0 {
		return 0, true
	}
	now := s.clock.Now()
	expired := 0
	for expired < len(s.accepted) && !s.accepted[expired].Add(rateWindow).After(now) {
		expired++
	}
	s.accepted = s.accepted[expired:]
	if len(s.accepted) >= s.rateLimit {
		return s.accepted[0].Add(rateWindow).Sub(now), false
	}
	s.accepted = append(s.accepted, now)
	return 0, true
}

func writeError(w http.ResponseWriter, httpStatus, status int, message string) {
	body, _ := json.Marshal(struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}{status, message})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
