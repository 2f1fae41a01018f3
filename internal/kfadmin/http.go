package kfadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpedge"
	"github.com/kefu-io/kefu/internal/wechat"
)

// Body limits of the admin API: JSON requests are small; an avatar may be
// as large as WeChat accepts (5 MiB) plus the multipart framing.
const (
	MaxRequestBody = 1 << 20
	MaxAvatarBody  = 5<<20 + 64<<10
)

// NewHTTPHandler serves the admin API under /api/kf/ (see the package
// documentation for the endpoints). Every request needs
// "Authorization: Bearer <token>": the admin token for changes, the admin or
// the read-only token for GET. With neither token configured nothing is
// served (404). The application guards all of /api/ the same way; this
// handler checks again so that it is never open wherever it is mounted.
func NewHTTPHandler(tokens httpedge.Tokens, deps Deps, logger *zap.Logger) http.Handler {
	if logger == nil {
		logger = zap.NewNop()
	}
	h := &httpAPI{admin: admin{deps: deps}, log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/kf/accounts", h.listAccounts)
	mux.HandleFunc("POST /api/kf/accounts", h.addAccount)
	mux.HandleFunc("PUT /api/kf/accounts/{account}", h.updateAccount)
	mux.HandleFunc("DELETE /api/kf/accounts/{account}", h.deleteAccount)
	mux.HandleFunc("POST /api/kf/accounts/{account}/avatar", h.uploadAvatar)
	mux.HandleFunc("POST /api/kf/accounts/{account}/invite", h.inviteWorker)
	mux.HandleFunc("GET /api/kf/online", h.online)
	mux.HandleFunc("GET /api/kf/waiting", h.waiting)
	mux.HandleFunc("GET /api/kf/sessions", h.listSessions)
	mux.HandleFunc("POST /api/kf/sessions", h.createSession)
	mux.HandleFunc("GET /api/kf/sessions/{openid}", h.getSession)
	mux.HandleFunc("POST /api/kf/sessions/close", h.closeSession)
	mux.HandleFunc("GET /api/kf/groups", h.listGroups)
	mux.HandleFunc("POST /api/kf/groups", h.createGroup)
	mux.HandleFunc("GET /api/kf/groups/{name}", h.getGroup)
	mux.HandleFunc("DELETE /api/kf/groups/{name}", h.deleteGroup)
	mux.HandleFunc("PUT /api/kf/groups/{name}/keywords", h.setKeywords)
	mux.HandleFunc("POST /api/kf/groups/{name}/members", h.addMembers)
	mux.HandleFunc("DELETE /api/kf/groups/{name}/members", h.removeMembers)
	mux.HandleFunc("DELETE /api/kf/groups/{name}/members/{account}", h.removeMember)
	if !tokens.Configured() {
		logger.Warn("kf admin API has no token: it is not served")
	}
	return tokens.Guard(httpapi.Routes(mux))
}

type httpAPI struct {
	admin admin
	log   *zap.Logger
}

// writeJSON answers a success; errors go through fail.
func writeJSON(w http.ResponseWriter, status int, v any) { httpapi.WriteJSON(w, status, v) }

// notConfiguredRetry is the Retry-After of a 503 for a missing setting
// (WeChat or NATS): it takes an operator and a restart, so a client should
// not come back within seconds.
const notConfiguredRetry = 5 * time.Minute

// statusOf maps an error to the HTTP status by its type, never its text.
func statusOf(err error) int {
	var apiErr *wechat.APIError
	var statusErr *wechat.HTTPStatusError
	var maxErr *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalidInput), errors.Is(err, wechat.ErrInvalidRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrGroupNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrGroupExists), errors.Is(err, ErrConflict), errors.Is(err, ErrNobodyOnline):
		return http.StatusConflict
	case errors.Is(err, ErrNotConfigured):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.As(err, &apiErr), errors.As(err, &statusErr), errors.Is(err, wechat.ErrMalformedResponse),
		errors.As(err, &netErr):
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

func (h *httpAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	var opts []httpapi.Option
	var apiErr *wechat.APIError
	switch {
	case errors.As(err, &apiErr):
		opts = append(opts, httpapi.WeChat(apiErr.ErrCode, apiErr.ErrMsg))
	case status == http.StatusBadRequest:
		opts = append(opts, httpapi.Type(httpapi.InvalidParameter))
	case status == http.StatusServiceUnavailable:
		opts = append(opts, httpapi.RetryAfter(notConfiguredRetry))
	}
	if status >= 500 {
		h.log.Warn("kf admin request failed", zap.String("method", r.Method), zap.String("path", r.Pattern),
			zap.Int("status", status), zap.Error(err))
	}
	// The detail is kefu's error text: its own words, WeChat's errmsg, and
	// at most a JSON decoder's quote of the body, all bounded by httpapi.
	httpapi.WriteProblem(w, status, err.Error(), opts...)
}

func (h *httpAPI) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

// decode reads a JSON body of at most MaxRequestBody bytes into v; unknown
// fields are refused so that a misspelt field is not silently ignored. The
// Content-Type is not checked: `curl -d` sends a form type by default.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return fmt.Errorf("request body over %d bytes: %w", MaxRequestBody, err)
		}
		return fmt.Errorf("%w: bad JSON body: %v", ErrInvalidInput, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return fmt.Errorf("request body over %d bytes: %w", MaxRequestBody, err)
		}
		return fmt.Errorf("%w: bad JSON body: more than one value", ErrInvalidInput)
	}
	return nil
}

type accountBody struct {
	KfAccount string `json:"kf_account"`
	Nickname  string `json:"nickname"`
	// Password in clear; the client sends its MD5.
	Password string `json:"password"`
}

func (h *httpAPI) listAccounts(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.accounts(r.Context())
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) addAccount(w http.ResponseWriter, r *http.Request) {
	var in accountBody
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.admin.saveAccount(r.Context(), false, wechat.KfAccountInput{KfAccount: in.KfAccount, Nickname: in.Nickname, Password: in.Password})
	h.reply(w, r, http.StatusCreated, out, err)
}

func (h *httpAPI) updateAccount(w http.ResponseWriter, r *http.Request) {
	var in accountBody
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	account := r.PathValue("account")
	if in.KfAccount != "" && in.KfAccount != account {
		h.fail(w, r, fmt.Errorf("%w: kf_account in the body differs from the path", ErrInvalidInput))
		return
	}
	out, err := h.admin.saveAccount(r.Context(), true, wechat.KfAccountInput{KfAccount: account, Nickname: in.Nickname, Password: in.Password})
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) deleteAccount(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.deleteAccount(r.Context(), r.PathValue("account"))
	h.reply(w, r, http.StatusOK, out, err)
}

// uploadAvatar takes multipart/form-data with the image in the field
// "media", as WeChat's own endpoint does.
func (h *httpAPI) uploadAvatar(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxAvatarBody)
	mr, err := r.MultipartReader()
	if err != nil {
		h.fail(w, r, fmt.Errorf("%w: want multipart/form-data with the image in field \"media\"", ErrInvalidInput))
		return
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			h.fail(w, r, fmt.Errorf("%w: no \"media\" part", ErrInvalidInput))
			return
		}
		if err != nil {
			if statusOf(err) != http.StatusRequestEntityTooLarge {
				err = fmt.Errorf("%w: read multipart body: %v", ErrInvalidInput, err)
			}
			h.fail(w, r, err)
			return
		}
		if part.FormName() != "media" {
			part.Close()
			continue
		}
		// Read the image here so that a too large body is a 413, not an
		// error deep inside the WeChat client.
		img, err := io.ReadAll(part)
		if err != nil {
			if statusOf(err) != http.StatusRequestEntityTooLarge {
				err = fmt.Errorf("%w: read image: %v", ErrInvalidInput, err)
			}
			h.fail(w, r, err)
			return
		}
		out, err := h.admin.uploadAvatar(r.Context(), r.PathValue("account"), part.FileName(), bytes.NewReader(img))
		h.reply(w, r, http.StatusOK, out, err)
		return
	}
}

func (h *httpAPI) online(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.online(r.Context())
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) waiting(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.waiting(r.Context())
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) getSession(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.session(r.Context(), r.PathValue("openid"))
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) listSessions(w http.ResponseWriter, r *http.Request) {
	kf := r.URL.Query().Get("kf")
	if kf == "" {
		h.fail(w, r, fmt.Errorf("%w: query parameter kf (the agent's kf account) is required", ErrInvalidInput))
		return
	}
	out, err := h.admin.sessions(r.Context(), kf)
	h.reply(w, r, http.StatusOK, out, err)
}

type sessionBody struct {
	OpenID    string `json:"openid"`
	KfAccount string `json:"kf_account"`
	// Kf is an alias of KfAccount, matching the ?kf= query parameter.
	Kf    string `json:"kf"`
	Group string `json:"group"`
	Text  string `json:"text"`
}

func (b sessionBody) account() (string, error) {
	if b.Kf != "" && b.KfAccount != "" && b.Kf != b.KfAccount {
		return "", fmt.Errorf("%w: kf and kf_account differ", ErrInvalidInput)
	}
	if b.KfAccount != "" {
		return b.KfAccount, nil
	}
	return b.Kf, nil
}

func (h *httpAPI) createSession(w http.ResponseWriter, r *http.Request) {
	var in sessionBody
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	kf, err := in.account()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.admin.createSession(r.Context(), SessionRequest{OpenID: in.OpenID, KfAccount: kf, Group: in.Group, Text: in.Text})
	h.reply(w, r, http.StatusCreated, out, err)
}

func (h *httpAPI) closeSession(w http.ResponseWriter, r *http.Request) {
	var in sessionBody
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	kf, err := in.account()
	if err == nil && in.Group != "" {
		err = fmt.Errorf("%w: close takes kf_account, not group", ErrInvalidInput)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.admin.closeSession(r.Context(), in.OpenID, kf, in.Text)
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) listGroups(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.listGroups(r.Context())
	h.reply(w, r, http.StatusOK, out, err)
}

type groupBody struct {
	Name     string   `json:"name"`
	Keywords []string `json:"keywords"`
	Members  []string `json:"members"`
}

func (h *httpAPI) createGroup(w http.ResponseWriter, r *http.Request) {
	var in groupBody
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.admin.createGroup(r.Context(), in.Name, in.Keywords, in.Members)
	h.reply(w, r, http.StatusCreated, out, err)
}

func (h *httpAPI) getGroup(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.getGroup(r.Context(), r.PathValue("name"))
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) deleteGroup(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.deleteGroup(r.Context(), r.PathValue("name"))
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) setKeywords(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Keywords []string `json:"keywords"`
	}
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	if in.Keywords == nil {
		h.fail(w, r, fmt.Errorf("%w: keywords is required ([] clears them)", ErrInvalidInput))
		return
	}
	out, err := h.admin.setKeywords(r.Context(), r.PathValue("name"), in.Keywords)
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) addMembers(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Members []string `json:"members"`
	}
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.admin.addMembers(r.Context(), r.PathValue("name"), in.Members)
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) removeMember(w http.ResponseWriter, r *http.Request) {
	out, err := h.admin.removeMembers(r.Context(), r.PathValue("name"), []string{r.PathValue("account")})
	h.reply(w, r, http.StatusOK, out, err)
}

// removeMembers takes several accounts out at once
// (?account=a&account=b), in one change as `kefu kf group remove` makes it.
func (h *httpAPI) removeMembers(w http.ResponseWriter, r *http.Request) {
	accounts := r.URL.Query()["account"]
	if len(accounts) == 0 {
		h.fail(w, r, fmt.Errorf("%w: query parameter account (one per member) is required", ErrInvalidInput))
		return
	}
	out, err := h.admin.removeMembers(r.Context(), r.PathValue("name"), accounts)
	h.reply(w, r, http.StatusOK, out, err)
}

func (h *httpAPI) inviteWorker(w http.ResponseWriter, r *http.Request) {
	var in struct {
		InviteWx string `json:"invite_wx"`
	}
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.admin.inviteWorker(r.Context(), r.PathValue("account"), in.InviteWx)
	h.reply(w, r, http.StatusOK, out, err)
}
