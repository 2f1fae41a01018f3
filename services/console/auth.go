package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/httpedge"
)

// Roles of a console session.
const (
	RoleReadOnly = "read"
	RoleAdmin    = "admin"
)

// CookieName is the console's session cookie.
const CookieName = "kefu_console"

// CSRFHeader carries the CSRF token on every POST.
const CSRFHeader = "X-Kefu-Csrf"

// Errors of signing in and of a session.
var (
	ErrBadToken   = errors.New("the token is neither the admin token nor the read-only token")
	ErrBadCode    = errors.New("the sign-in link is unknown, used or expired")
	ErrNoSession  = errors.New("not signed in")
	ErrBadCSRF    = errors.New("missing or wrong CSRF token")
	ErrNotAllowed = errors.New("this needs the admin token")
)

// maxCodes bounds the one-time sign-in codes waiting to be used.
const maxCodes = 64

// sessions signs and checks the session cookie. A cookie is
//
//	base64url(role byte ‖ expiry unix seconds ‖ 16 random bytes) "." base64url(HMAC-SHA256)
//
// keyed with a key derived from both tokens: nothing is stored, every
// replica accepts every replica's cookie, and changing a token signs
// everyone out. The CSRF token is an HMAC of the cookie under another
// derivation of the key, so a page from another origin, which can neither
// read the cookie nor the page, cannot produce it.
type sessions struct {
	tokens  httpedge.Tokens
	key     []byte
	ttl     time.Duration
	trusted func(r *http.Request) bool // request came over TLS (directly or from a trusted proxy)
	now     func() time.Time

	mu    sync.Mutex
	codes map[string]oneTime
}

type oneTime struct {
	role    string
	expires time.Time
}

func newSessions(admin, readOnly string, ttl time.Duration, secure func(*http.Request) bool) *sessions {
	k := sha256.New()
	k.Write([]byte("kefu console session v1\x00"))
	k.Write([]byte(admin))
	k.Write([]byte{0})
	k.Write([]byte(readOnly))
	return &sessions{tokens: httpedge.NewTokens(admin, readOnly), key: k.Sum(nil), ttl: ttl, trusted: secure, now: time.Now,
		codes: map[string]oneTime{}}
}

// roleOfToken says which token tok is, comparing in constant time.
func (s *sessions) roleOfToken(tok string) (string, error) {
	r := &http.Request{Header: http.Header{"Authorization": {"Bearer " + tok}}}
	switch s.tokens.Authorize(r) {
	case httpedge.Admin:
		return RoleAdmin, nil
	case httpedge.ReadOnly:
		return RoleReadOnly, nil
	}
	return "", ErrBadToken
}

// NewCode makes a one-time sign-in code for role, valid for ttl.
func (s *sessions) newCode(role string, ttl time.Duration) string {
	b := make([]byte, 24)
	rand.Read(b)
	code := base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for c, o := range s.codes {
		if now.After(o.expires) {
			delete(s.codes, c)
		}
	}
	if len(s.codes) >= maxCodes {
		for c := range s.codes {
			delete(s.codes, c)
			break
		}
	}
	s.codes[code] = oneTime{role: role, expires: now.Add(ttl)}
	return code
}

// useCode spends a one-time code.
func (s *sessions) useCode(code string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.codes[code]
	if !ok || s.now().After(o.expires) {
		return "", ErrBadCode
	}
	delete(s.codes, code)
	return o.role, nil
}

func (s *sessions) mac(label string, msg []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(label))
	h.Write(msg)
	return h.Sum(nil)
}

// issue sets the session cookie of a new session with role.
func (s *sessions) issue(w http.ResponseWriter, r *http.Request, role string) string {
	body := make([]byte, 1+8+16)
	if role == RoleAdmin {
		body[0] = 'a'
	} else {
		body[0] = 'r'
	}
	expires := s.now().Add(s.ttl)
	binary.BigEndian.PutUint64(body[1:9], uint64(expires.Unix()))
	rand.Read(body[9:])
	value := base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(s.mac("cookie", body))
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: value, Path: "/console/", Expires: expires,
		MaxAge: int(s.ttl / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.trusted(r)})
	return value
}

// clear removes the cookie (sign out).
func (s *sessions) clear(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/console/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.trusted(r)})
}

// session is a signed-in visitor.
type session struct {
	role    string
	value   string // the cookie, from which the CSRF token derives
	expires time.Time
}

// check reads and verifies the session cookie of r.
func (s *sessions) check(r *http.Request) (session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) > 200 {
		return session{}, ErrNoSession
	}
	return s.checkValue(c.Value)
}

func (s *sessions) checkValue(value string) (session, error) {
	b64body, b64mac, ok := strings.Cut(value, ".")
	if !ok {
		return session{}, ErrNoSession
	}
	body, err1 := base64.RawURLEncoding.DecodeString(b64body)
	mac, err2 := base64.RawURLEncoding.DecodeString(b64mac)
	if err1 != nil || err2 != nil || len(body) != 25 || !hmac.Equal(mac, s.mac("cookie", body)) {
		return session{}, ErrNoSession
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(body[1:9])), 0)
	if !s.now().Before(expires) {
		return session{}, ErrNoSession
	}
	role := RoleReadOnly
	switch body[0] {
	case 'a':
		role = RoleAdmin
	case 'r':
	default:
		return session{}, ErrNoSession
	}
	return session{role: role, value: value, expires: expires}, nil
}

// csrf is the CSRF token of a session.
func (s *sessions) csrf(sess session) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", []byte(sess.value)))
}

// checkCSRF verifies the CSRF header of a state-changing request, and, when
// the browser says where the request comes from, that it is this origin.
func (s *sessions) checkCSRF(r *http.Request, sess session) error {
	got := r.Header.Get(CSRFHeader)
	if got == "" || !hmac.Equal([]byte(got), []byte(s.csrf(sess))) {
		return ErrBadCSRF
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return ErrBadCSRF
	}
	return nil
}
