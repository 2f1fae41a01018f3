package httpedge

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/kefu-io/kefu/internal/httpapi"
)

// Access is what a request's bearer token allows.
type Access int

const (
	// NoAccess: no token, a wrong one, or none configured.
	NoAccess Access = iota
	// ReadOnly: the read-only token (KEFU_API_TOKEN): GET and HEAD.
	ReadOnly
	// Admin: the admin token (KEFU_ADMIN_TOKEN): every method.
	Admin
)

// Realm is the realm of kefu's WWW-Authenticate challenges.
const Realm = "kefu"

// Tokens are the bearer tokens of the private API. Build it with NewTokens;
// only the tokens' SHA-256 digests are kept.
type Tokens struct {
	admin, readOnly       [sha256.Size]byte
	hasAdmin, hasReadOnly bool
}

// NewTokens keeps the digests of the admin and the read-only token; an
// empty string means that token is not configured (it matches nothing).
func NewTokens(admin, readOnly string) Tokens {
	t := Tokens{hasAdmin: admin != "", hasReadOnly: readOnly != ""}
	if t.hasAdmin {
		t.admin = sha256.Sum256([]byte(admin))
	}
	if t.hasReadOnly {
		t.readOnly = sha256.Sum256([]byte(readOnly))
	}
	return t
}

// Configured reports whether any token is set; without one the API is not
// served.
func (t Tokens) Configured() bool { return t.hasAdmin || t.hasReadOnly }

// bearer returns the token of an "Authorization: Bearer <token>" header
// (the scheme is case-insensitive, RFC 7235), and whether one was given.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(scheme):])
	return tok, tok != ""
}

// Authorize says what r's bearer token allows. Both digests are compared
// whatever the token, so the time taken reveals neither which token matched
// nor, since digests have one length, how long the tokens are.
func (t Tokens) Authorize(r *http.Request) Access {
	tok, ok := bearer(r)
	if !ok {
		return NoAccess
	}
	got := sha256.Sum256([]byte(tok))
	isAdmin := subtle.ConstantTimeCompare(got[:], t.admin[:]) == 1 && t.hasAdmin
	isReadOnly := subtle.ConstantTimeCompare(got[:], t.readOnly[:]) == 1 && t.hasReadOnly
	switch {
	case isAdmin:
		return Admin
	case isReadOnly:
		return ReadOnly
	}
	return NoAccess
}

// Guard serves next only to requests with a valid bearer token: the admin
// token for any method, the read-only token for GET and HEAD (403
// otherwise). A missing token is answered 401 with
// `WWW-Authenticate: Bearer realm="kefu"`, a wrong one the same with
// error="invalid_token". With no token configured every request is answered
// 404: the API is not served, rather than served open.
func (t Tokens) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.Configured() {
			// The answer to an unknown path: nothing says the API exists.
			httpapi.WriteProblem(w, http.StatusNotFound, "no such endpoint")
			return
		}
		switch t.Authorize(r) {
		case Admin:
			next.ServeHTTP(w, r)
			return
		case ReadOnly:
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`", error="insufficient_scope"`)
			httpapi.WriteProblem(w, http.StatusForbidden, "the read-only token may only GET; this needs the admin token")
			return
		}
		if _, given := bearer(r); given {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`", error="invalid_token"`)
			httpapi.WriteProblem(w, http.StatusUnauthorized, "invalid bearer token", httpapi.Type(httpapi.Unauthorized))
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`"`)
		httpapi.WriteProblem(w, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>", httpapi.Type(httpapi.Unauthorized))
	})
}
