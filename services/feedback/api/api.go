// Package api serves the feedback service's read-only HTTP queries:
//
//	GET /api/feedback/posts     openid, from, to, q, limit, cursor
//	GET /api/feedback/sessions  openid, kf_account, from, to, limit, cursor
//
// The openid of the posts list is the WeChat openid: it finds the posts the
// customer made under it (before kefu posted pseudonyms) and under their
// pseudonym (WithPseudonym, and any recorded with their sessions).
//
// Both answer {"items": [...], "next_cursor": "..."}, newest first;
// next_cursor is empty on the last page and is passed back as cursor for
// the next one. from and to are RFC 3339 times or YYYY-MM-DD days in
// Asia/Shanghai (Tucao's zone): from is inclusive, to exclusive for a time
// and inclusive of the whole day for a day, so from=2025-03-01&to=2025-03-01
// is that day. Posts are selected by created_at, sessions by closed_at.
//
// A post's "session" is the session it is feedback on, with "session_id"
// (kefu's id, events.SessionID) and "linked_by": "session_id" when the post
// names that session (written through the feedback link sent when it
// closed), "openid" when it was linked by its customer's latest close
// before it. A session item carries its "session_id" too.
//
// Errors are RFC 9457 problem details (docs/http-api.md): a bad parameter
// gets 400 of type invalid-parameter naming it in "param"; another method
// than GET or HEAD gets 405 with an Allow header; a store failure gets 500
// whose body says nothing about the cause, which is logged instead. Times are
// RFC 3339 in UTC with whole seconds.
package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Paths of the endpoints.
const (
	PathPosts    = "/api/feedback/posts"
	PathSessions = "/api/feedback/sessions"
)

// queryTimeout bounds one store query, so a slow database answers 500
// instead of holding connections until the client gives up.
const queryTimeout = 10 * time.Second

// Longest accepted filter values: ids are short; a search longer than
// this is not a search.
const (
	maxIDLen    = 128
	maxQueryLen = 256
)

// shanghai is the zone of YYYY-MM-DD days. A fixed offset, not
// time.LoadLocation: China has kept +08:00 without daylight saving time
// since 1991, and it needs no tzdata in the container.
var shanghai = time.FixedZone("CST", 8*3600)

type handler struct {
	store     store.Store
	log       *zap.Logger
	pseudonym func(string) string
}

// Option configures the handler.
type Option func(*handler)

// WithPseudonym makes the openid filter of the posts list also find the
// posts under the customer's pseudonym (package feedbacklink), even when
// none of their session facts records it. nil changes nothing.
func WithPseudonym(fn func(openid string) string) Option {
	return func(h *handler) { h.pseudonym = fn }
}

// New returns the handler of both endpoints; mount it at the server's
// root or under /api/feedback/. logger may be nil.
func New(s store.Store, logger *zap.Logger, opts ...Option) http.Handler {
	if logger == nil {
		logger = zap.NewNop()
	}
	h := &handler{store: s, log: logger}
	for _, opt := range opts {
		opt(h)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(PathPosts, h.posts)
	mux.HandleFunc(PathSessions, h.sessions)
	return mux
}

// badParam is a request parameter the handler cannot use.
type badParam struct {
	param, reason string
}

func (h *handler) posts(w http.ResponseWriter, r *http.Request) {
	serveList(h, w, r, "list feedback posts", func(p *params) store.PostQuery {
		q := store.PostQuery{OpenID: p.text("openid", maxIDLen), Q: p.text("q", maxQueryLen)}
		q.Limit, q.Cursor, q.From, q.To = p.page()
		if q.OpenID != "" && h.pseudonym != nil {
			q.Pseudonym = h.pseudonym(q.OpenID)
		}
		return q
	}, h.store.ListPosts, viewPostPage)
}

func (h *handler) sessions(w http.ResponseWriter, r *http.Request) {
	serveList(h, w, r, "list feedback sessions", func(p *params) store.SessionQuery {
		q := store.SessionQuery{OpenID: p.text("openid", maxIDLen), KfAccount: p.text("kf_account", maxIDLen)}
		q.Limit, q.Cursor, q.From, q.To = p.page()
		return q
	}, h.store.ListSessions, viewSessionPage)
}

// serveList answers a read-only list request: the query built from the
// URL parameters (400 naming the first bad one), the store's page as JSON.
func serveList[Q, P, V any](h *handler, w http.ResponseWriter, r *http.Request, what string,
	query func(*params) Q, list func(context.Context, Q) (P, error), view func(P) V) {
	if !allowRead(w, r) {
		return
	}
	p := params{values: r.URL.Query()}
	q := query(&p)
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.reason, p.err.param)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	page, err := list(ctx, q)
	if err != nil {
		h.storeFailed(w, r, what, err)
		return
	}
	writeJSON(w, http.StatusOK, view(page))
}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method "+httpapi.Quote(r.Method)+" not allowed", "")
	return false
}

// storeFailed answers a failed query. Only an invalid cursor is the
// client's fault; everything else is logged and answered without detail.
func (h *handler) storeFailed(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, store.ErrInvalidCursor):
		writeError(w, http.StatusBadRequest, "not a cursor of this list; pass next_cursor back unchanged", "cursor")
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		h.log.Debug(op+": client gone", zap.Error(err))
	default:
		h.log.Error(op, zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal error", "")
	}
}

// params reads query parameters, keeping the first problem found.
type params struct {
	values url.Values
	err    *badParam
}

func (p *params) fail(param, format string, args ...any) {
	if p.err == nil {
		p.err = &badParam{param: param, reason: fmt.Sprintf(format, args...)}
	}
}

// get returns a parameter given at most once.
func (p *params) get(name string) string {
	vs := p.values[name]
	if len(vs) > 1 {
		p.fail(name, "given %d times, want at most once", len(vs))
		return ""
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func (p *params) text(name string, maxLen int) string {
	v := p.get(name)
	switch {
	case !utf8.ValidString(v):
		p.fail(name, "not valid UTF-8")
		return ""
	case utf8.RuneCountInString(v) > maxLen:
		p.fail(name, "longer than %d characters", maxLen)
		return ""
	}
	return v
}

func (p *params) limit() int {
	v := p.get("limit")
	if v == "" {
		return store.DefaultLimit
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxLimit {
		p.fail("limit", "want an integer from 1 to %d", store.MaxLimit)
		return 0
	}
	return n
}

// page reads the parameters every list takes after its own filters, in
// this order: limit, cursor, from and to.
func (p *params) page() (limit int, cursor string, from, to time.Time) {
	limit = p.limit()
	cursor = p.text("cursor", 512)
	from, to = p.timeRange()
	return limit, cursor, from, to
}

// timeRange reads from and to, see the package documentation.
func (p *params) timeRange() (from, to time.Time) {
	from = p.time("from", false)
	to = p.time("to", true)
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		p.fail("to", "must be after from")
	}
	return from, to
}

func (p *params) time(name string, endOfDay bool) time.Time {
	v := p.get(name)
	if v == "" {
		return time.Time{}
	}
	if day, err := time.ParseInLocation(time.DateOnly, v, shanghai); err == nil {
		if endOfDay {
			return day.AddDate(0, 0, 1)
		}
		return day
	}
	// An unencoded '+' of a zone offset arrives as a space; a time has
	// no other space, so it is put back.
	t, err := time.Parse(time.RFC3339, strings.ReplaceAll(v, " ", "+"))
	if err != nil {
		p.fail(name, "want an RFC 3339 time (2025-03-01T10:00:00+08:00) or a YYYY-MM-DD day")
		return time.Time{}
	}
	return t
}

func writeError(w http.ResponseWriter, status int, msg, param string) {
	if param != "" {
		msg = param + ": " + msg
		httpapi.WriteProblem(w, status, msg, httpapi.Param(param))
		return
	}
	httpapi.WriteProblem(w, status, msg)
}

// writeJSON answers a page; httpapi writes its times in UTC with whole
// seconds and sets no-store, as the answers hold customers' personal data.
func writeJSON(w http.ResponseWriter, status int, v any) { httpapi.WriteJSON(w, status, v) }
