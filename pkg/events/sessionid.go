package events

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"
)

// Session ids.
//
// WeChat gives a 多客服 session no id. kefu names a closed session by its
// kf_close_session event, which every role sees:
//
//	session id = "ks1_" + base64url(SHA-256("kefu/session/v1" ‖ 0x00 ‖ openid ‖
//	             0x00 ‖ kf_account ‖ 0x00 ‖ decimal unix seconds of the close))[:16 bytes]
//
// without padding: SessionIDLength (26) characters. The close time is the
// callback's CreateTime (ClosedAt), which WeChat repeats unchanged in every
// retry, so the notifier (which puts the id in the feedback link), the
// feedback store (which stores it with the session) and any other
// subscriber compute the same id from the same event. The id reveals
// nothing about the openid to someone who does not already know it.

// SessionIDLength is the length of every session id.
const SessionIDLength = 26

const sessionIDPrefix = "ks1_"

// SessionID returns kefu's id of the session of customer openid that agent
// kfAccount closed at closedAt (whole seconds count).
func SessionID(openid, kfAccount string, closedAt time.Time) string {
	h := sha256.New()
	h.Write([]byte("kefu/session/v1\x00"))
	h.Write([]byte(openid))
	h.Write([]byte{0})
	h.Write([]byte(kfAccount))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(closedAt.Unix(), 10)))
	return sessionIDPrefix + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// ClosedAt is the close time session ids use: the callback's CreateTime,
// or OccurredAt when the event carries none.
func (e SessionClosed) ClosedAt() time.Time {
	if e.CreateTime > 0 {
		return time.Unix(e.CreateTime, 0).UTC()
	}
	return e.OccurredAt.UTC().Truncate(time.Second)
}

// SessionID is the id of the session the event closes.
func (e SessionClosed) SessionID() string { return SessionID(e.OpenID, e.KfAccount, e.ClosedAt()) }

// IsSessionID reports whether s has the form of a session id.
func IsSessionID(s string) bool {
	if len(s) != SessionIDLength || s[:len(sessionIDPrefix)] != sessionIDPrefix {
		return false
	}
	for i := len(sessionIDPrefix); i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
