package feedbacklink

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

func closedEvent() events.SessionClosed {
	return events.SessionClosed{WeChatSource: events.WeChatSource{OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", CreateTime: t0.Unix()}, KfAccount: "kf2001@gh_shop"}
}

func TestSessionTokenCarriesTheSession(t *testing.T) {
	keys := mustKeys(t, "0123456789abcdef", "")
	s := NewSigner(keys, time.Hour, func() time.Time { return t0 })
	ev := closedEvent()
	sess := ClosedSession(ev)
	if sess.ID != ev.SessionID() || sess.KfAccount != "kf2001@gh_shop" || !sess.ClosedAt.Equal(t0) {
		t.Fatalf("ClosedSession = %+v", sess)
	}
	token := s.SessionToken(ev.OpenID, sess)
	link, err := s.VerifyLink(token)
	if err != nil {
		t.Fatal(err)
	}
	if link.Pseudonym != keys.Pseudonym(ev.OpenID) || link.Session == nil || *link.Session != *sess {
		t.Errorf("VerifyLink = %+v, want the pseudonym and %+v", link, sess)
	}
	if strings.Contains(token, ev.OpenID) || strings.Contains(decodePayload(t, token), ev.OpenID) {
		t.Error("the token carries the openid")
	}
	// Verify, for callers that want only the pseudonym, still works.
	if p, err := s.Verify(token); err != nil || p != link.Pseudonym {
		t.Errorf("Verify = %q, %v", p, err)
	}
	// A token without a session names none.
	if link, err := s.VerifyLink(s.Token(ev.OpenID)); err != nil || link.Session != nil {
		t.Errorf("plain token: %+v, %v", link, err)
	}
}

func decodePayload(t *testing.T, token string) string {
	t.Helper()
	enc, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSessionTokenCannotBeRetargeted(t *testing.T) {
	keys := mustKeys(t, "0123456789abcdef", "")
	s := NewSigner(keys, time.Hour, func() time.Time { return t0 })
	ev := closedEvent()
	token := s.SessionToken(ev.OpenID, ClosedSession(ev))
	enc, sig, _ := strings.Cut(token, ".")
	body, _ := base64.RawURLEncoding.DecodeString(enc)
	other := events.SessionID("someone-else", "kf2001@gh_shop", t0)
	forged := strings.Replace(string(body), ev.SessionID(), other, 1)
	if forged == string(body) {
		t.Fatal("test did not change the payload")
	}
	if _, err := s.VerifyLink(base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + sig); !errors.Is(err, ErrBadToken) {
		t.Errorf("a token pointed at another session: %v, want ErrBadToken", err)
	}
	// A signed token whose session is malformed is refused too.
	bad := NewSigner(keys, time.Hour, func() time.Time { return t0 })
	p := payload{Pseudonym: keys.Pseudonym("o"), Expiry: t0.Add(time.Hour).Unix(), Session: &sessionPayload{ID: "nope", KfAccount: "k@a", ClosedAt: 1}}
	b, _ := json.Marshal(p)
	e := base64.RawURLEncoding.EncodeToString(b)
	if _, err := bad.VerifyLink(e + "." + bad.sign(e)); !errors.Is(err, ErrBadToken) {
		t.Errorf("a malformed session id: %v, want ErrBadToken", err)
	}
	// A session that is not well formed is left out of a new token.
	if link, err := s.VerifyLink(s.SessionToken("o", &Session{ID: "nope", KfAccount: "k@a", ClosedAt: t0})); err != nil || link.Session != nil {
		t.Errorf("a token for a malformed session: %+v, %v; want one without a session", link, err)
	}
}

func TestCustomInfoRoundTripsThroughExtra(t *testing.T) {
	sess := ClosedSession(closedEvent())
	info := CustomInfo(sess)
	if strings.Contains(info, closedEvent().OpenID) {
		t.Errorf("customInfo %s carries the openid", info)
	}
	quoted, _ := json.Marshal(info)
	tests := []struct {
		name  string
		extra string
		want  string
	}{
		{"customInfo returned as an object", info, sess.ID},
		{"customInfo returned as a JSON string", string(quoted), sess.ID},
		{"the documented empty extra", `[]`, ""},
		{"another site's fields", `{"clientInfo":"iPhone"}`, ""},
		{"a forged malformed id", `{"kefu_session_id":"ks1_<script>"}`, ""},
		{"not JSON", `{"kefu_session_id":`, ""},
		{"nothing", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SessionIDOf(json.RawMessage(tt.extra)); got != tt.want {
				t.Errorf("SessionIDOf(%s) = %q, want %q", tt.extra, got, tt.want)
			}
		})
	}
	if CustomInfo(nil) != "" {
		t.Error("CustomInfo(nil) is not empty")
	}
}
