// Package feedbacklink holds the two keyed functions behind kefu's feedback
// link: the signer of the token a closed-session message carries, and the
// pseudonym that stands for a customer on Tucao.
//
// Tucao logs a site's user in through a form POST of openid, nickname and
// avatar, and takes the posted openid as the user's identity: whoever posts
// an openid posts as that user. Posting the WeChat openid would let anyone
// who learns one (an agent's screenshot, an export, a leaked link) write
// feedback in the customer's name. So kefu posts a pseudonym instead, an HMAC
// of the openid under a key only kefu holds: it cannot be computed from the
// openid without the key, and it reveals nothing about the openid. The link
// token carries the pseudonym, never the openid.
//
// The notifier makes and checks the links; the feedback role computes the
// same pseudonym for every closed session it stores, to link the posts
// that come back from Tucao under it. Both build their Keys from the same
// settings with NewKeys, so they agree.
//
// # Keys
//
// One configured secret gives two keys that are never the same bytes:
//
//	link key:      KEFU_FEEDBACK_LINK_SECRET itself, or when unset
//	               HMAC-SHA256(KEFU_WECHAT_SECRET, "kefu/feedback-link/v1")
//	pseudonym key: HMAC-SHA256(S, "kefu/tucao-pseudonym-key/v1"), where S is
//	               KEFU_FEEDBACK_LINK_SECRET when set, else KEFU_WECHAT_SECRET
//
// The link key is what kefu signed links with before pseudonyms existed,
// so links already sent keep working. Changing the secret the keys come from
// invalidates the links sent and gives every customer a new pseudonym.
//
// # Pseudonym
//
// pseudonym(openid) = base64url(HMAC-SHA256(pseudonym key,
// "kefu/tucao-openid/v1:" ‖ openid)[:24]), without padding: always
// PseudonymLength (32) characters of A–Z a–z 0–9 - _, an opaque id to Tucao.
// 192 bits leave no practical chance of two customers sharing one.
//
// # Token
//
// base64url(payload) "." base64url(HMAC-SHA256(link key, base64url(payload))),
// payload = {"p": pseudonym, "e": expiry in unix seconds, "s": session}.
// Tokens issued before pseudonyms carry {"o": openid, "e": expiry}; Verify
// still accepts them until they expire and returns the pseudonym of their
// openid, so the page they open never shows or posts the openid.
//
// # Session
//
// A link sent when a session closed names that session: "s" is {"i":
// session id (events.SessionID), "k": kf_account, "c": close time in unix
// seconds}, signed with the rest. The page passes it to Tucao's login as
// customInfo (CustomInfo), which Tucao returns as every post's "extra": the
// feedback store links such a post to exactly that session. Tokens without
// "s" (older links, links sent without a session) still work; their posts
// are linked by the customer and the time instead.
package feedbacklink

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

const (
	// PseudonymLength is the length of every pseudonym.
	PseudonymLength = 32
	// pseudonymBytes of the HMAC are kept: 24 bytes are 32 base64
	// characters without padding.
	pseudonymBytes = 24
	// MinSecretLength is the least length of KEFU_FEEDBACK_LINK_SECRET.
	MinSecretLength = 16
	// MaxTokenLength bounds the work a stranger can make Verify do.
	MaxTokenLength = 1024

	// Labels keep the keys and the HMAC inputs of each use apart.
	linkKeyLabel      = "kefu/feedback-link/v1"
	pseudonymKeyLabel = "kefu/tucao-pseudonym-key/v1"
	pseudonymLabel    = "kefu/tucao-openid/v1:"
)

// Errors of NewKeys and Verify.
var (
	ErrNoSecret     = errors.New("feedback link: neither KEFU_FEEDBACK_LINK_SECRET nor KEFU_WECHAT_SECRET is set")
	ErrShortSecret  = fmt.Errorf("feedback link: KEFU_FEEDBACK_LINK_SECRET must be at least %d characters", MinSecretLength)
	ErrBadToken     = errors.New("feedback link: malformed or bad signature")
	ErrExpiredToken = errors.New("feedback link: expired")
)

// Keys are the link key and the pseudonym key. The zero value has no keys;
// use NewKeys.
type Keys struct {
	link, pseudonym []byte
}

// NewKeys derives the keys from KEFU_FEEDBACK_LINK_SECRET (linkSecret) or,
// when that is empty, from KEFU_WECHAT_SECRET (wechatSecret).
func NewKeys(linkSecret, wechatSecret string) (Keys, error) {
	switch {
	case linkSecret != "" && len(linkSecret) < MinSecretLength:
		return Keys{}, ErrShortSecret
	case linkSecret != "":
		return Keys{link: []byte(linkSecret), pseudonym: derive(linkSecret, pseudonymKeyLabel)}, nil
	case wechatSecret != "":
		return Keys{link: derive(wechatSecret, linkKeyLabel), pseudonym: derive(wechatSecret, pseudonymKeyLabel)}, nil
	}
	return Keys{}, ErrNoSecret
}

func derive(secret, label string) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(label))
	return mac.Sum(nil)
}

// Pseudonym is the id that stands for openid on Tucao (see the package
// documentation).
func (k Keys) Pseudonym(openid string) string {
	if k.pseudonym == nil {
		panic("feedbacklink: Pseudonym on Keys without keys; use NewKeys")
	}
	mac := hmac.New(sha256.New, k.pseudonym)
	mac.Write([]byte(pseudonymLabel))
	mac.Write([]byte(openid))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:pseudonymBytes])
}

// IsPseudonym reports whether s has the shape of a pseudonym. It cannot
// tell whose: only Pseudonym with the key can.
func IsPseudonym(s string) bool {
	if len(s) != PseudonymLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Signer makes and checks link tokens.
type Signer struct {
	keys Keys
	ttl  time.Duration
	now  func() time.Time
}

// NewSigner returns a signer whose tokens are valid for ttl; now is the
// clock (time.Now when nil).
func NewSigner(keys Keys, ttl time.Duration, now func() time.Time) *Signer {
	if keys.link == nil {
		panic("feedbacklink: NewSigner needs keys from NewKeys")
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{keys: keys, ttl: ttl, now: now}
}

// payload is the signed content of a token: P in tokens of this version,
// O (the openid) in tokens issued before pseudonyms.
type payload struct {
	Pseudonym string          `json:"p,omitempty"`
	OpenID    string          `json:"o,omitempty"`
	Expiry    int64           `json:"e"`
	Session   *sessionPayload `json:"s,omitempty"`
}

type sessionPayload struct {
	ID        string `json:"i"`
	KfAccount string `json:"k"`
	ClosedAt  int64  `json:"c"`
}

// maxKfAccountLength bounds the kf_account a token may carry: WeChat's
// accounts are at most 10 + 1 + 30 characters.
const maxKfAccountLength = 64

// Session is the 多客服 session a feedback link was sent for.
type Session struct {
	// ID is kefu's session id (events.SessionID).
	ID string
	// KfAccount is the agent who closed the session.
	KfAccount string
	// ClosedAt is when it closed (whole seconds).
	ClosedAt time.Time
}

// ClosedSession is the Session of a kf_close_session event.
func ClosedSession(e events.SessionClosed) *Session {
	return &Session{ID: e.SessionID(), KfAccount: e.KfAccount, ClosedAt: e.ClosedAt()}
}

// customInfo is the JSON a page passes to Tucao as customInfo; the feedback
// store reads it back from a post's extra (ParseCustomInfo).
type customInfo struct {
	SessionID       string `json:"kefu_session_id"`
	KfAccount       string `json:"kf_account,omitempty"`
	SessionClosedAt string `json:"session_closed_at,omitempty"`
}

// CustomInfo is the customInfo the feedback page posts to Tucao for the
// session: {"kefu_session_id", "kf_account", "session_closed_at"
// (RFC 3339)}. It holds no openid.
func CustomInfo(s *Session) string {
	if s == nil {
		return ""
	}
	b, _ := json.Marshal(customInfo{SessionID: s.ID, KfAccount: s.KfAccount, SessionClosedAt: s.ClosedAt.UTC().Format(time.RFC3339)})
	return string(b)
}

// maxExtraLength bounds the extra ParseCustomInfo reads.
const maxExtraLength = 16 << 10

// SessionIDOf returns the session id a post's extra carries — the customInfo
// of CustomInfo, as a JSON object or as a JSON string holding one — or ""
// when it carries none or one that is not a well-formed session id.
func SessionIDOf(extra json.RawMessage) string {
	if len(extra) == 0 || len(extra) > maxExtraLength {
		return ""
	}
	var text string
	if json.Unmarshal(extra, &text) == nil {
		extra = json.RawMessage(text)
	}
	var info customInfo
	if json.Unmarshal(extra, &info) != nil || !events.IsSessionID(info.SessionID) {
		return ""
	}
	return info.SessionID
}

func (s *Signer) sign(encoded string) string {
	mac := hmac.New(sha256.New, s.keys.link)
	mac.Write([]byte(encoded))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Token returns a signed token for the customer openid, valid for the
// signer's TTL. It carries the customer's pseudonym, not the openid.
func (s *Signer) Token(openid string) string { return s.SessionToken(openid, nil) }

// SessionToken is Token for a link sent about session sess (nil: none).
// A kf_account too long to be WeChat's is left out of the token.
func (s *Signer) SessionToken(openid string, sess *Session) string {
	p := payload{Pseudonym: s.keys.Pseudonym(openid), Expiry: s.now().Add(s.ttl).Unix()}
	if sess != nil && events.IsSessionID(sess.ID) && len(sess.KfAccount) <= maxKfAccountLength {
		p.Session = &sessionPayload{ID: sess.ID, KfAccount: sess.KfAccount, ClosedAt: sess.ClosedAt.Unix()}
	}
	body, _ := json.Marshal(p)
	encoded := base64.RawURLEncoding.EncodeToString(body)
	return encoded + "." + s.sign(encoded)
}

// Link is what a valid token says.
type Link struct {
	// Pseudonym is the customer's id to post to Tucao.
	Pseudonym string
	// Session is the session the link was sent for; nil when the token
	// names none.
	Session *Session
}

// Verify checks a token's signature first, then its expiry, and returns
// the pseudonym to post to Tucao: the one the token carries, or the
// pseudonym of the openid an older token carries.
func (s *Signer) Verify(token string) (string, error) {
	link, err := s.VerifyLink(token)
	return link.Pseudonym, err
}

// VerifyLink is Verify that also returns the session the token names.
func (s *Signer) VerifyLink(token string) (Link, error) {
	pseudonym, p, err := s.verify(token)
	if err != nil {
		return Link{}, err
	}
	link := Link{Pseudonym: pseudonym}
	if sp := p.Session; sp != nil {
		if !events.IsSessionID(sp.ID) || len(sp.KfAccount) > maxKfAccountLength || sp.ClosedAt <= 0 {
			return Link{}, ErrBadToken
		}
		link.Session = &Session{ID: sp.ID, KfAccount: sp.KfAccount, ClosedAt: time.Unix(sp.ClosedAt, 0).UTC()}
	}
	return link, nil
}

func (s *Signer) verify(token string) (string, payload, error) {
	if len(token) > MaxTokenLength {
		return "", payload{}, ErrBadToken
	}
	encoded, sig, ok := strings.Cut(token, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign(encoded))) {
		return "", payload{}, ErrBadToken
	}
	body, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return "", payload{}, ErrBadToken
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return "", payload{}, ErrBadToken
	}
	var pseudonym string
	switch {
	case p.Pseudonym != "":
		pseudonym = p.Pseudonym
	case p.OpenID != "":
		pseudonym = s.keys.Pseudonym(p.OpenID)
	}
	if !IsPseudonym(pseudonym) {
		return "", payload{}, ErrBadToken
	}
	if s.now().Unix() > p.Expiry {
		return "", payload{}, ErrExpiredToken
	}
	return pseudonym, p, nil
}
