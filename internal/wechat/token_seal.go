package wechat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TokenSealKey derives the key that seals the access token in the
// kefu_token bucket from the AppSecret. Every process that can refresh the
// token has the AppSecret, so every one of them can read it; whoever can
// only read the bucket (a NATS user, a backup of the JetStream store, a
// `nats kv get`) cannot use the token against WeChat.
func TokenSealKey(appSecret string) ([]byte, error) {
	if appSecret == "" {
		return nil, errors.New("token seal key: the AppSecret is empty")
	}
	return hkdf.Key(sha256.New, []byte(appSecret), nil, "kefu kefu_token access token v1", 32)
}

// storedToken is the value of the token key in the kefu_token bucket: the
// token's times in clear (so an operator can see when it was fetched and
// expires), the token itself sealed with AES-256-GCM, the appid as
// additional data so a value cannot be moved to another appid's key.
// Token is read only for values written before sealing existed; it is
// never written when a seal key is set.
type storedToken struct {
	Token     string    `json:"token,omitempty"`
	Sealed    string    `json:"sealed_token,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	FetchedAt time.Time `json:"fetched_at"`
	Invalid   bool      `json:"invalid,omitempty"`
}

// tokenCodec turns a tokenState into the bucket's value and back.
type tokenCodec struct {
	aead cipher.AEAD // nil: the token is stored in clear
	ad   []byte
}

func newTokenCodec(key []byte, appID string) (tokenCodec, error) {
	if key == nil {
		return tokenCodec{}, nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return tokenCodec{}, fmt.Errorf("token seal key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return tokenCodec{}, fmt.Errorf("token seal key: %w", err)
	}
	return tokenCodec{aead: aead, ad: []byte(appID)}, nil
}

func (c tokenCodec) encode(st tokenState) ([]byte, error) {
	v := storedToken{ExpiresAt: st.ExpiresAt, FetchedAt: st.FetchedAt, Invalid: st.Invalid}
	if c.aead == nil {
		v.Token = st.Token
	} else {
		nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(st.Token)+c.aead.Overhead())
		if _, err := cryptorand.Read(nonce); err != nil {
			return nil, fmt.Errorf("seal access token: %w", err)
		}
		v.Sealed = base64.RawStdEncoding.EncodeToString(c.aead.Seal(nonce, nonce, []byte(st.Token), c.ad))
	}
	return json.Marshal(v)
}

// decode reads a value; ok is false when it cannot be read (not JSON,
// sealed with another key — the AppSecret was changed — or tampered with),
// which the source treats like a missing token: it fetches a new one and
// overwrites the value.
func (c tokenCodec) decode(b []byte) (st tokenState, ok bool) {
	var v storedToken
	if json.Unmarshal(b, &v) != nil {
		return tokenState{}, false
	}
	st = tokenState{Token: v.Token, ExpiresAt: v.ExpiresAt, FetchedAt: v.FetchedAt, Invalid: v.Invalid}
	if v.Sealed == "" {
		// Written in clear (before sealing, or by a process without a
		// key): still the token WeChat issued; the next refresh seals it.
		return st, true
	}
	if c.aead == nil {
		return tokenState{}, false
	}
	raw, err := base64.RawStdEncoding.DecodeString(v.Sealed)
	if err != nil || len(raw) < c.aead.NonceSize() {
		return tokenState{}, false
	}
	tok, err := c.aead.Open(nil, raw[:c.aead.NonceSize()], raw[c.aead.NonceSize():], c.ad)
	if err != nil {
		return tokenState{}, false
	}
	st.Token = string(tok)
	return st, true
}
