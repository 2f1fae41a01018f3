package feedbacklink

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func mustKeys(t *testing.T, linkSecret, wechatSecret string) Keys {
	t.Helper()
	k, err := NewKeys(linkSecret, wechatSecret)
	if err != nil {
		t.Fatalf("NewKeys: %v", err)
	}
	return k
}

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestPseudonym(t *testing.T) {
	keys := mustKeys(t, "0123456789abcdef", "")
	const openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
	p := keys.Pseudonym(openid)

	t.Run("the same openid and key always give the same pseudonym", func(t *testing.T) {
		if again := mustKeys(t, "0123456789abcdef", "").Pseudonym(openid); again != p {
			t.Errorf("pseudonym changed between two Keys of one secret: %q, %q", p, again)
		}
		// Pinned: a change of the derivation would unlink every post
		// already on Tucao from its session.
		if want := pinned(t); p != want {
			t.Errorf("pseudonym = %q, want the pinned %q", p, want)
		}
	})
	t.Run("it is fixed-length and URL-safe", func(t *testing.T) {
		for _, o := range []string{openid, "", "x", strings.Repeat("长", 500), "a/b+c=d?&#%"} {
			got := keys.Pseudonym(o)
			if len(got) != PseudonymLength || !urlSafe.MatchString(got) || !IsPseudonym(got) {
				t.Errorf("Pseudonym(%q) = %q: want %d URL-safe characters", o, got, PseudonymLength)
			}
		}
	})
	t.Run("it is not the openid and does not contain it", func(t *testing.T) {
		if p == openid || strings.Contains(p, openid) || strings.Contains(openid, p) {
			t.Errorf("pseudonym %q reveals the openid", p)
		}
	})
	t.Run("another key gives another pseudonym", func(t *testing.T) {
		for _, other := range []Keys{
			mustKeys(t, "fedcba9876543210", ""),
			mustKeys(t, "", "wechat-secret"),
			mustKeys(t, "", "wechat-secret-2"),
		} {
			if other.Pseudonym(openid) == p {
				t.Errorf("two keys give the same pseudonym %q", p)
			}
		}
		if mustKeys(t, "", "a").Pseudonym(openid) == mustKeys(t, "", "b").Pseudonym(openid) {
			t.Error("two WeChat secrets give the same pseudonym")
		}
	})
	t.Run("another openid gives another pseudonym", func(t *testing.T) {
		seen := map[string]string{}
		for i := range 10000 {
			o := fmt.Sprintf("o-customer-%d", i)
			q := keys.Pseudonym(o)
			if prev, dup := seen[q]; dup {
				t.Fatalf("%q and %q share the pseudonym %q", prev, o, q)
			}
			seen[q] = o
		}
	})
}

// pinned is the pseudonym of TestPseudonym's openid under its key,
// computed outside Go (Python hmac) from the documented formula.
func pinned(t *testing.T) string {
	t.Helper()
	return "y0SR64rwMxlgDakL0S0-BkLROgWnSUPV"
}

func TestKeys(t *testing.T) {
	t.Run("neither secret set is an error", func(t *testing.T) {
		if _, err := NewKeys("", ""); !errors.Is(err, ErrNoSecret) {
			t.Errorf("error = %v, want ErrNoSecret", err)
		}
	})
	t.Run("a short link secret is refused", func(t *testing.T) {
		if _, err := NewKeys("short", "wechat-secret"); !errors.Is(err, ErrShortSecret) {
			t.Errorf("error = %v, want ErrShortSecret", err)
		}
	})
	t.Run("the link key is the link secret itself, so links sent before stay valid", func(t *testing.T) {
		k := mustKeys(t, "explicit-secret-123", "wechat-secret")
		if string(k.link) != "explicit-secret-123" {
			t.Errorf("link key %x is not the configured secret", k.link)
		}
	})
	t.Run("the link key derived from the WeChat secret is as before", func(t *testing.T) {
		k := mustKeys(t, "", "wechat-secret")
		if string(k.link) == "wechat-secret" || !bytes.Equal(k.link, derive("wechat-secret", "kefu/feedback-link/v1")) {
			t.Errorf("derived link key %x", k.link)
		}
	})
	t.Run("the pseudonym key is never the link key nor a secret", func(t *testing.T) {
		for _, c := range []struct{ link, wechat string }{
			{"explicit-secret-123", ""}, {"explicit-secret-123", "wechat-secret"}, {"", "wechat-secret"},
		} {
			k := mustKeys(t, c.link, c.wechat)
			if len(k.pseudonym) != 32 || bytes.Equal(k.pseudonym, k.link) ||
				string(k.pseudonym) == c.link || string(k.pseudonym) == c.wechat {
				t.Errorf("secrets %q/%q: pseudonym key %x, link key %x", c.link, c.wechat, k.pseudonym, k.link)
			}
		}
	})
	t.Run("the link secret wins over the WeChat secret", func(t *testing.T) {
		a := mustKeys(t, "explicit-secret-123", "wechat-secret")
		b := mustKeys(t, "explicit-secret-123", "another-wechat-secret")
		if a.Pseudonym("o") != b.Pseudonym("o") {
			t.Error("the WeChat secret changed the pseudonym although a link secret is set")
		}
	})
}

// oldToken is a token as kefu signed them before pseudonyms: the openid
// in the payload.
func oldToken(s *Signer, openid string, expiry time.Time) string {
	body, _ := json.Marshal(map[string]any{"o": openid, "e": expiry.Unix()})
	encoded := base64.RawURLEncoding.EncodeToString(body)
	return encoded + "." + s.sign(encoded)
}

func TestTokens(t *testing.T) {
	now := t0
	keys := mustKeys(t, "0123456789abcdef", "")
	signer := NewSigner(keys, time.Hour, func() time.Time { return now })
	const openid = "o-customer-1"
	want := keys.Pseudonym(openid)
	token := signer.Token(openid)
	encoded, sig, _ := strings.Cut(token, ".")
	decoded, _ := base64.RawURLEncoding.DecodeString(encoded)
	otherEncoded := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(decoded), want, keys.Pseudonym("o-customer-2"), 1)))
	otherKey := NewSigner(mustKeys(t, "fedcba9876543210", ""), time.Hour, signer.now)
	old := oldToken(signer, openid, t0.Add(time.Hour))
	oldEncoded, oldSig, _ := strings.Cut(old, ".")
	oldForged := base64.RawURLEncoding.EncodeToString([]byte(`{"o":"o-customer-2","e":` + fmt.Sprint(t0.Add(time.Hour).Unix()) + `}`))
	unsignedOld := base64.RawURLEncoding.EncodeToString([]byte(`{"o":"o-customer-1","e":9999999999}`))

	tests := []struct {
		name    string
		token   string
		at      time.Time
		want    string
		wantErr error
	}{
		{"a fresh token gives the pseudonym", token, t0, want, nil},
		{"a token is valid until its expiry", token, t0.Add(time.Hour), want, nil},
		{"after the expiry it is expired", token, t0.Add(time.Hour + time.Second), "", ErrExpiredToken},
		{"a token issued before pseudonyms gives the pseudonym of its openid", old, t0, want, nil},
		{"an old token is valid until its expiry", old, t0.Add(time.Hour), want, nil},
		{"an old token expires as it always did", old, t0.Add(time.Hour + time.Second), "", ErrExpiredToken},
		{"another openid in an old token under its signature is refused", oldForged + "." + oldSig, t0, "", ErrBadToken},
		{"an old payload with a made-up signature is refused", unsignedOld + "." + oldSig, t0, "", ErrBadToken},
		{"another pseudonym under the signature is refused", otherEncoded + "." + sig, t0, "", ErrBadToken},
		{"a token signed with another key is refused", otherKey.Token(openid), t0, "", ErrBadToken},
		{"a token without signature is refused", encoded, t0, "", ErrBadToken},
		{"an old token without signature is refused", oldEncoded, t0, "", ErrBadToken},
		{"garbage is refused", "%%%.###", t0, "", ErrBadToken},
		{"an oversized token is refused", strings.Repeat("a", 2000) + "." + sig, t0, "", ErrBadToken},
		{"a forged expired token is bad, not expired", otherEncoded + "." + sig, t0.Add(2 * time.Hour), "", ErrBadToken},
		{"a signed payload without an id is refused", signed(signer, `{"e":9999999999}`), t0, "", ErrBadToken},
		{"a signed payload whose pseudonym is malformed is refused", signed(signer, `{"p":"<script>","e":9999999999}`), t0, "", ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = tt.at
			got, err := signer.Verify(tt.token)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	t.Run("a token is URL-safe and does not reveal the openid", func(t *testing.T) {
		if !urlSafe.MatchString(strings.ReplaceAll(token, ".", "")) {
			t.Errorf("token %q is not URL-safe", token)
		}
		if strings.Contains(string(decoded), openid) || strings.Contains(token, openid) {
			t.Errorf("token payload %s carries the openid", decoded)
		}
		if !strings.Contains(string(decoded), `"p":"`+want+`"`) {
			t.Errorf("token payload %s does not carry the pseudonym", decoded)
		}
	})
}

func signed(s *Signer, body string) string {
	encoded := base64.RawURLEncoding.EncodeToString([]byte(body))
	return encoded + "." + s.sign(encoded)
}
