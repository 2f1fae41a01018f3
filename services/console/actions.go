package console

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/kfadmin"
)

// actionRoute is how a console action reaches the kf admin API: every
// action is a POST with a JSON body (so that one CSRF check covers them
// all and no customer or group name is in the URL); the group name and
// the account, where the admin API wants them in its path, are taken out
// of the body.
type actionRoute struct {
	method string
	// path builds the admin API path from the name and account fields.
	path func(name, account string) string
	// name and account say whether the body carries them.
	name, account bool
}

var actionRoutes = map[string]actionRoute{
	"sessions":        {method: http.MethodPost, path: func(string, string) string { return "/api/kf/sessions" }},
	"sessions/close":  {method: http.MethodPost, path: func(string, string) string { return "/api/kf/sessions/close" }},
	"groups":          {method: http.MethodPost, path: func(string, string) string { return "/api/kf/groups" }},
	"groups/delete":   {method: http.MethodDelete, name: true, path: func(n, _ string) string { return "/api/kf/groups/" + url.PathEscape(n) }},
	"groups/keywords": {method: http.MethodPut, name: true, path: func(n, _ string) string { return "/api/kf/groups/" + url.PathEscape(n) + "/keywords" }},
	"groups/members":  {method: http.MethodPost, name: true, path: func(n, _ string) string { return "/api/kf/groups/" + url.PathEscape(n) + "/members" }},
	"groups/members/remove": {method: http.MethodDelete, name: true, account: true, path: func(n, a string) string {
		return "/api/kf/groups/" + url.PathEscape(n) + "/members/" + url.PathEscape(a)
	}},
}

// action runs one admin operation through the kf admin API — the same code
// as `kefu kf` and /api/kf/ — with the admin token, for an admin session
// with a valid CSRF token. The admin API's answer (its status, its
// problem, with errcode and errmsg when WeChat refused) is passed on as it
// is.
func (s *Service) action(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.authorize(w, r)
	if !ok {
		return
	}
	if sess.role != RoleAdmin {
		writeError(w, http.StatusForbidden, ErrNotAllowed.Error())
		return
	}
	if s.deps.Actions == nil {
		writeError(w, http.StatusServiceUnavailable, "actions are off: this process has no WeChat API settings", httpapi.RetryAfter(actionsOffRetry))
		return
	}
	name := r.PathValue("action")
	route, ok := actionRoutes[name]
	if !ok {
		writeError(w, http.StatusNotFound, "no such action")
		return
	}
	var fields map[string]json.RawMessage
	if !decodeBody(w, r, &fields, kfadmin.MaxRequestBody, "request body over 1 MiB", "bad JSON body: want an object") {
		return
	}
	var group, account string
	if route.name {
		if group = stringField(fields, "name"); group == "" {
			writeError(w, http.StatusBadRequest, "name (the group) is required")
			return
		}
		delete(fields, "name")
	}
	if route.account {
		if account = stringField(fields, "account"); account == "" {
			writeError(w, http.StatusBadRequest, "account is required")
			return
		}
		delete(fields, "account")
	}
	var body []byte
	if route.method != http.MethodDelete {
		body, _ = json.Marshal(fields)
	} else if len(fields) > 0 {
		writeError(w, http.StatusBadRequest, "unexpected fields for "+name)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), route.method, route.path(group, account), bytes.NewReader(body))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid name or account")
		return
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.deps.Actions.ServeHTTP(rec, req)
	s.metrics.actions.WithLabelValues(name, statusClass(rec.status)).Inc()
	// The action and its outcome, never whom it concerned.
	s.log.Info("console action", zap.String("action", name), zap.Int("status", rec.status))
}

func stringField(fields map[string]json.RawMessage, k string) string {
	var v string
	if raw, ok := fields[k]; ok {
		if json.Unmarshal(raw, &v) != nil {
			return ""
		}
	}
	return strings.TrimSpace(v)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func statusClass(code int) string {
	switch {
	case code < 300:
		return "ok"
	case code < 500:
		return "refused"
	}
	return "failed"
}
