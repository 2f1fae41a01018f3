package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Path is where the console is served.
const Path = "/console/"

//go:embed web
var webFS embed.FS

// Config configures the console.
type Config struct {
	// AdminToken and ReadOnlyToken are KEFU_ADMIN_TOKEN and KEFU_API_TOKEN:
	// the admin token signs in with actions, the read-only one without.
	// With neither the console answers 404.
	AdminToken, ReadOnlyToken string
	// AppID selects the account's queue view (every account's when empty).
	AppID string
	// TrustedProxies may say, with X-Forwarded-Proto, that the browser
	// spoke TLS (then the cookie is Secure).
	TrustedProxies []netip.Prefix
	// StaleAfter is KEFU_QUEUE_STALE_AFTER: sessions older are flagged.
	StaleAfter time.Duration
	// History is how far back the queue and session streams are read at
	// start (recently served and left customers, accuracy); default 2h.
	History time.Duration
	// PostHistory is how far back Tucao posts are read; default 7 days.
	PostHistory time.Duration
	// SessionTTL is how long a sign-in lasts; default 12h.
	SessionTTL time.Duration
	// MaxStreams bounds the live connections; default 1000.
	MaxStreams int
	// Heartbeat is the interval of the live stream's keep-alive comment;
	// default 15s.
	Heartbeat time.Duration
}

func (c *Config) setDefaults() {
	c.History = config.PositiveOr(c.History, 2*time.Hour)
	c.PostHistory = config.PositiveOr(c.PostHistory, 7*24*time.Hour)
	c.SessionTTL = config.PositiveOr(c.SessionTTL, 12*time.Hour)
	c.MaxStreams = config.PositiveOr(c.MaxStreams, 1000)
	c.Heartbeat = config.PositiveOr(c.Heartbeat, 15*time.Second)
	c.StaleAfter = config.PositiveOr(c.StaleAfter, 30*time.Minute)
}

// Deps are the console's sources and the admin operations.
type Deps struct {
	// Bus is read, never written: streams and the kefu_state and
	// kefu_groups buckets. Nil: nothing is followed (handler tests).
	Bus *bus.Bus
	// Posts is the feedback store's query layer; nil: the feedback filter
	// searches the latest posts the console read from the bus.
	Posts PostLister
	// Actions is the kf admin API (kfadmin.NewHTTPHandler), which the
	// console's actions go through with the admin token; nil: no actions.
	Actions    http.Handler
	Logger     *zap.Logger
	Registerer prometheus.Registerer
}

// PostLister is the query the feedback filter runs.
type PostLister interface {
	ListPosts(ctx context.Context, q store.PostQuery) (store.PostPage, error)
}

// Service serves the console.
type Service struct {
	cfg      Config
	deps     Deps
	log      *zap.Logger
	hub      *hub
	sessions *sessions
	feed     *feed
	static   http.Handler
	cancel   context.CancelFunc
	metrics  *metrics
}

// New builds the console.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if deps.Logger == nil {
		deps.Logger = zap.NewNop()
	}
	sub, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, deps: deps, log: deps.Logger, hub: newHub(newState(cfg.StaleAfter), cfg.MaxStreams),
		static: http.FileServerFS(sub)}
	s.sessions = newSessions(cfg.AdminToken, cfg.ReadOnlyToken, cfg.SessionTTL, s.overTLS)
	s.metrics = newMetrics(deps.Registerer, s.hub)
	return s, nil
}

// Start follows the bus.
func (s *Service) Start(ctx context.Context) error {
	if s.deps.Bus == nil {
		return nil
	}
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.feed = &feed{b: s.deps.Bus, hub: s.hub, log: s.log, history: s.cfg.History, postAge: s.cfg.PostHistory, appKey: queueKey(s.cfg.AppID)}
	s.feed.run(ctx)
	return nil
}

// Stop ends the live streams and stops following the bus.
func (s *Service) Stop(ctx context.Context) error {
	s.hub.closeAll()
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.feed.wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseStreams ends every live stream (the browsers reconnect, to another
// replica or after a restart). The HTTP server calls it when it shuts
// down, since a stream would otherwise hold the shutdown until its
// deadline.
func (s *Service) CloseStreams() { s.hub.closeAll() }

// SignInCode returns a one-time code for a sign-in link
// (Path + "#code=" + code), valid for ttl: `kefu demo` prints one so that
// no token appears in a URL.
func (s *Service) SignInCode(admin bool, ttl time.Duration) string {
	role := RoleReadOnly
	if admin {
		role = RoleAdmin
	}
	return s.sessions.newCode(role, ttl)
}

// Routes registers the console under Path.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.Handle(Path, s.Handler())
	mux.Handle("/console", http.RedirectHandler(Path, http.StatusMovedPermanently))
}

// Handler serves everything under Path.
func (s *Service) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET "+Path+"api/me", s.me)
	m.HandleFunc("POST "+Path+"api/login", s.login)
	m.HandleFunc("POST "+Path+"api/logout", s.logout)
	m.HandleFunc("GET "+Path+"api/state", s.state)
	m.HandleFunc("GET "+Path+"api/events", s.events)
	m.HandleFunc("POST "+Path+"api/feedback", s.feedback)
	m.HandleFunc("POST "+Path+"api/kf/{action...}", s.action)
	m.HandleFunc(Path+"api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such console endpoint")
	})
	m.HandleFunc(Path, s.page)
	return securityHeaders(m, !s.configured())
}

func (s *Service) configured() bool { return s.cfg.AdminToken != "" || s.cfg.ReadOnlyToken != "" }

// securityHeaders sets what every answer carries: no framing, no sniffing,
// scripts and styles only from the console itself, no referrer, no cache
// for the API. Without any token the console is not served at all.
func securityHeaders(next http.Handler, off bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if off {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, Path+"api/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// page serves the embedded assets; the page itself works out whether the
// visitor is signed in.
func (s *Service) page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + strings.TrimPrefix(r.URL.Path, Path)
	if r2.URL.Path == "/" {
		w.Header().Set("Cache-Control", "no-cache")
	}
	s.static.ServeHTTP(w, r2)
}

// overTLS reports whether the browser reached kefu over TLS: directly, or
// through a trusted proxy that says so with X-Forwarded-Proto.
func (s *Service) overTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !strings.EqualFold(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0]), "https") {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// me tells the page who is signed in, and the CSRF token for its POSTs.
func (s *Service) me(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessions.check(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": sess.role, "csrf": s.sessions.csrf(sess),
		"actions": sess.role == RoleAdmin && s.deps.Actions != nil, "expires": sess.expires.UTC()})
}

// streamsFullRetry is the Retry-After of a 503 for too many live streams.
const streamsFullRetry = 10 * time.Second

// actionsOffRetry is the Retry-After of a 503 for actions without WeChat
// API settings: it takes an operator and a restart.
const actionsOffRetry = 5 * time.Minute

// maxLoginBody bounds a sign-in request.
const maxLoginBody = 4 << 10

// login signs in with a token or a one-time code, in a JSON body (never
// the URL): {"token": "..."} or {"code": "..."}.
func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		writeError(w, http.StatusForbidden, "sign in from the console page")
		return
	}
	var body struct {
		Token string `json:"token"`
		Code  string `json:"code"`
	}
	if !decodeBody(w, r, &body, maxLoginBody, "sign-in body over 4 KiB", `bad JSON body: want {"token": "..."} or {"code": "..."}`) {
		return
	}
	var role string
	var err error
	switch {
	case body.Token != "" && body.Code != "":
		writeError(w, http.StatusBadRequest, "give a token or a code, not both")
		return
	case body.Token != "":
		role, err = s.sessions.roleOfToken(body.Token)
	case body.Code != "":
		role, err = s.sessions.useCode(body.Code)
	default:
		writeError(w, http.StatusBadRequest, "a token or a code is required")
		return
	}
	if err != nil {
		s.metrics.logins.WithLabelValues("refused").Inc()
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	s.metrics.logins.WithLabelValues(role).Inc()
	sess, _ := s.sessions.checkValue(s.sessions.issue(w, r, role))
	writeJSON(w, http.StatusOK, map[string]any{"role": role, "csrf": s.sessions.csrf(sess),
		"actions": role == RoleAdmin && s.deps.Actions != nil, "expires": sess.expires.UTC()})
}

func (s *Service) logout(w http.ResponseWriter, r *http.Request) {
	if sess, err := s.sessions.check(r); err == nil {
		if err := s.sessions.checkCSRF(r, sess); err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
	}
	s.sessions.clear(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// authorize checks the session, and for a POST the CSRF token.
func (s *Service) authorize(w http.ResponseWriter, r *http.Request) (session, bool) {
	sess, err := s.sessions.check(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return session{}, false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.sessions.checkCSRF(r, sess); err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return session{}, false
		}
	}
	return sess, true
}

func (s *Service) state(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r); !ok {
		return
	}
	b, err := s.hub.snapshotJSON()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode state")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
}

// events is the live stream: a "state" event with the whole state, then a
// "d" event per change. A stream that falls too far behind is closed; the
// browser's EventSource reconnects and starts from a new state.
func (s *Service) events(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.authorize(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	c, first, err := s.hub.subscribe()
	if errors.Is(err, ErrTooManyStreams) {
		// Streams end when pages close or sessions expire; a browser's
		// EventSource retries by itself, so a short wait spreads them.
		writeError(w, http.StatusServiceUnavailable, err.Error(), httpapi.Type(httpapi.NotReady), httpapi.RetryAfter(streamsFullRetry))
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, "encode state")
		return
	}
	defer s.hub.unsubscribe(c)
	// The server's write timeout is for ordinary answers; a stream lives
	// as long as its session.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	if _, err := w.Write(first); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	expiry := time.NewTimer(time.Until(sess.expires))
	defer expiry.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.gone:
			return
		case <-expiry.C:
			return
		case <-beat.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case f := <-c.frames:
			if _, err := w.Write(f); err != nil {
				return
			}
			// Write what else is queued before flushing: one flush per burst.
			for more := true; more; {
				select {
				case f := <-c.frames:
					if _, err := w.Write(f); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) { httpapi.WriteJSON(w, status, v) }

// writeError answers a problem (docs/http-api.md). A 401 is typed
// unauthorized, a 400 (a bad body or field) invalid-parameter.
// decodeBody decodes r's JSON body, at most limit bytes and with no
// fields v does not have, into v. When it cannot, it answers 413 tooLarge
// for a body over the limit (400 bad when tooLarge is "") or 400 bad, and
// reports false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, limit int64, tooLarge, bad string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var maxErr *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &maxErr) && tooLarge != "":
		writeError(w, http.StatusRequestEntityTooLarge, tooLarge)
	default:
		writeError(w, http.StatusBadRequest, bad)
	}
	return false
}

func writeError(w http.ResponseWriter, status int, msg string, opts ...httpapi.Option) {
	switch status {
	case http.StatusUnauthorized:
		opts = append([]httpapi.Option{httpapi.Type(httpapi.Unauthorized)}, opts...)
	case http.StatusBadRequest:
		opts = append([]httpapi.Option{httpapi.Type(httpapi.InvalidParameter)}, opts...)
	}
	httpapi.WriteProblem(w, status, msg, opts...)
}
