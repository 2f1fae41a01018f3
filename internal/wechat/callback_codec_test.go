package wechat

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func newVectorCCodec(t testing.TB) *Codec {
	t.Helper()
	c, err := NewCodec(vectorC.token, vectorC.appID, vectorC.aesKey)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

func newPlainCodec(t testing.TB) *Codec {
	t.Helper()
	c, err := NewCodec(vectorC.token, vectorC.appID, "")
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	if c.Crypter != nil {
		t.Fatal("NewCodec without a key built a Crypter")
	}
	return c
}

func TestNewCodec(t *testing.T) {
	tests := []struct {
		name, token, key string
		wantErr          bool
	}{
		{"token and key", vectorC.token, vectorC.aesKey, false},
		{"token without key is plain only", vectorC.token, "", false},
		{"empty token is refused because anyone could sign", "", vectorC.aesKey, true},
		{"malformed key is refused", vectorC.token, "short", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCodec(tt.token, vectorC.appID, tt.key)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewCodec error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (c.Crypter != nil) != (tt.key != "") {
				t.Errorf("Crypter = %v with key %q", c.Crypter, tt.key)
			}
		})
	}
}

func TestVerifyURL(t *testing.T) {
	plainCodec := newPlainCodec(t)
	weCom, err := NewCodec(vectorB.token, vectorB.receiveID, vectorB.aesKey)
	if err != nil {
		t.Fatal(err)
	}
	weComNoKey, err := NewCodec(vectorB.token, vectorB.receiveID, "")
	if err != nil {
		t.Fatal(err)
	}
	weComOtherID, err := NewCodec(vectorB.token, "wx0000000000000000", vectorB.aesKey)
	if err != nil {
		t.Fatal(err)
	}
	plainQuery := url.Values{
		"signature": {"16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"},
		"timestamp": {vectorC.timestamp}, "nonce": {vectorC.nonce}, "echostr": {"5837397749228283011"},
	}
	safeQuery := url.Values{
		"msg_signature": {vectorB.msgSignature},
		"timestamp":     {vectorB.timestamp}, "nonce": {vectorB.nonce}, "echostr": {vectorB.echostr},
	}
	// A sender that leaves "+" unescaped: the query decoder turns it into a space.
	rawPlus, err := url.ParseQuery("msg_signature=" + vectorB.msgSignature + "&timestamp=" + vectorB.timestamp +
		"&nonce=" + vectorB.nonce + "&echostr=" + vectorB.echostr)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		codec   *Codec
		q       url.Values
		want    string
		wantErr error
	}{
		{"plain: a valid signature echoes echostr", plainCodec, plainQuery, "5837397749228283011", nil},
		{"plain: a key does not change plain verification", newVectorCCodec(t), plainQuery, "5837397749228283011", nil},
		{"plain: a wrong signature is refused", plainCodec, queryWith(plainQuery, "signature", strings.Repeat("0", 40)), "", ErrBadSignature},
		{"plain: a missing signature is refused", plainCodec, queryWith(plainQuery, "signature", ""), "", ErrBadSignature},
		{"plain: a changed timestamp is refused", plainCodec, queryWith(plainQuery, "timestamp", "1409735670"), "", ErrBadSignature},
		{"plain: a missing echostr is malformed", plainCodec, queryWith(plainQuery, "echostr", ""), "", ErrMalformed},
		{"safe: vector B decrypts echostr", weCom, safeQuery, vectorB.plain, nil},
		{"safe: an unescaped + in echostr still verifies", weCom, rawPlus, vectorB.plain, nil},
		{"safe: a wrong msg_signature is refused", weCom, queryWith(safeQuery, "msg_signature", strings.Repeat("0", 40)), "", ErrBadSignature},
		{"safe: a changed nonce is refused", weCom, queryWith(safeQuery, "nonce", "263014781"), "", ErrBadSignature},
		{"safe: without a key the request is refused", weComNoKey, safeQuery, "", ErrNoAESKey},
		{"safe: echostr sealed for another receiveid is refused", weComOtherID, safeQuery, "", ErrAppIDMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.codec.VerifyURL(tt.q)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyURL error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("VerifyURL = %q, want %q", got, tt.want)
			}
		})
	}
}

// vectorCQuery is the query WeChat sent with vector C.
func vectorCQuery() url.Values {
	return url.Values{
		"signature":     {"16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"},
		"timestamp":     {vectorC.timestamp},
		"nonce":         {vectorC.nonce},
		"openid":        {"oyORnuP8q7ou2gfYjqLzSIWZf0rs"},
		"encrypt_type":  {"aes"},
		"msg_signature": {vectorC.msgSignature},
	}
}

func TestOpenVectorC(t *testing.T) {
	c := newVectorCCodec(t)
	safeBody := "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<Encrypt><![CDATA[" + vectorC.encrypt + "]]></Encrypt>\n</xml>"
	// In compat mode the plaintext copy is not covered by msg_signature; this
	// one was altered on the way and must be ignored.
	compatBody := strings.Replace(vectorC.decrypted, "abcdteT", "forged", 1)
	compatBody = strings.Replace(compatBody, "</xml>", "<Encrypt><![CDATA["+vectorC.encrypt+"]]></Encrypt>\n</xml>", 1)
	plainQuery := vectorCQuery()
	plainQuery.Del("encrypt_type")
	plainQuery.Del("msg_signature")

	tests := []struct {
		name          string
		q             url.Values
		body          string
		want          string
		wantEncrypted bool
	}{
		{"plain: the body is the message", plainQuery, vectorC.decrypted, vectorC.decrypted, false},
		{"plain: encrypt_type=raw is plain", queryWith(plainQuery, "encrypt_type", "raw"), vectorC.decrypted, vectorC.decrypted, false},
		{"safe: the Encrypt element is decrypted", vectorCQuery(), safeBody, vectorC.decrypted, true},
		{"compat: the decrypted message wins over the plaintext copy", vectorCQuery(), compatBody, vectorC.decrypted, true},
		{"safe without encrypt_type: msg_signature alone means encrypted", queryWith(vectorCQuery(), "encrypt_type", ""), safeBody, vectorC.decrypted, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, encrypted, err := c.Open(tt.q, []byte(tt.body))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if string(got) != tt.want || encrypted != tt.wantEncrypted {
				t.Errorf("Open = (%q, %v), want (%q, %v)", got, encrypted, tt.want, tt.wantEncrypted)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	c := newVectorCCodec(t)
	safeBody := []byte("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[" + vectorC.encrypt + "]]></Encrypt></xml>")
	other, err := NewCodec(vectorC.token, "wx0000000000000000", vectorC.aesKey)
	if err != nil {
		t.Fatal(err)
	}
	otherQ, otherBody, err := other.SignCallback(ModeSafe, []byte(vectorC.decrypted), "", "1700000000", "42")
	if err != nil {
		t.Fatal(err)
	}
	// A correctly signed envelope whose Encrypt is not valid base64.
	badB64 := "!!!!"
	badB64Q := queryWith(vectorCQuery(), "msg_signature", MsgSignature(vectorC.token, vectorC.timestamp, vectorC.nonce, badB64))
	plainQuery := vectorCQuery()
	plainQuery.Del("encrypt_type")
	plainQuery.Del("msg_signature")

	tests := []struct {
		name  string
		codec *Codec
		q     url.Values
		body  []byte
		want  error
	}{
		{"plain: a wrong signature is refused", c, queryWith(plainQuery, "signature", strings.Repeat("a", 40)), []byte(vectorC.decrypted), ErrBadSignature},
		{"plain: a missing signature is refused", c, queryWith(plainQuery, "signature", ""), []byte(vectorC.decrypted), ErrBadSignature},
		{"safe: a wrong msg_signature is refused", c, queryWith(vectorCQuery(), "msg_signature", strings.Repeat("a", 40)), safeBody, ErrBadSignature},
		{"safe: a missing msg_signature is refused", c, queryWith(vectorCQuery(), "msg_signature", ""), safeBody, ErrBadSignature},
		{"safe: a valid plain signature does not stand in for msg_signature", c, queryWith(vectorCQuery(), "msg_signature", ""), safeBody, ErrBadSignature},
		{"safe: a changed timestamp is refused", c, queryWith(vectorCQuery(), "timestamp", "1409735670"), safeBody, ErrBadSignature},
		{"safe: a changed Encrypt is refused", c, vectorCQuery(), bytes.Replace(safeBody, []byte("hyzA"), []byte("hyzB"), 1), ErrBadSignature},
		{"safe: a payload sealed for another appid is refused", c, otherQ, otherBody, ErrAppIDMismatch},
		{"safe: a body without Encrypt is malformed", c, vectorCQuery(), []byte("<xml><ToUserName>gh_1</ToUserName></xml>"), ErrMalformed},
		{"safe: a body that is not XML is malformed", c, vectorCQuery(), []byte("Encrypt=" + vectorC.encrypt), ErrMalformed},
		{"safe: a DOCTYPE in the envelope is malformed", c, vectorCQuery(), append([]byte(`<!DOCTYPE xml [<!ENTITY e "x">]>`), safeBody...), ErrMalformed},
		{"safe: a signed but undecodable Encrypt is malformed", c, badB64Q, []byte("<xml><Encrypt>" + badB64 + "</Encrypt></xml>"), ErrMalformed},
		{"an unknown encrypt_type is malformed", c, queryWith(vectorCQuery(), "encrypt_type", "sm4"), safeBody, ErrMalformed},
		{"encrypted without a configured key is refused", newPlainCodec(t), vectorCQuery(), safeBody, ErrNoAESKey},
		{"encrypted with a bad signature and no key is a bad signature first", newPlainCodec(t), queryWith(vectorCQuery(), "msg_signature", strings.Repeat("a", 40)), safeBody, ErrBadSignature},
		{"plain is refused when encryption is required, however well signed", &Codec{Token: vectorC.token, AppID: vectorC.appID, Crypter: c.Crypter, RequireEncrypted: true}, plainQuery, []byte(vectorC.decrypted), ErrBadSignature},
		{"a codec built without a token refuses everything", &Codec{AppID: vectorC.appID}, queryWith(plainQuery, "signature", Signature("", vectorC.timestamp, vectorC.nonce)), []byte(vectorC.decrypted), ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := tt.codec.Open(tt.q, tt.body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Errorf("Open returned %q along with an error", got)
			}
		})
	}
}

func TestSignCallbackOpenRoundTrip(t *testing.T) {
	c := newVectorCCodec(t)
	msg := []byte(vectorC.decrypted)
	for _, mode := range []Mode{ModePlain, ModeCompat, ModeSafe} {
		t.Run(mode.String(), func(t *testing.T) {
			q, body, err := c.SignCallback(mode, msg, "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "1700000000", "987654321")
			if err != nil {
				t.Fatalf("SignCallback: %v", err)
			}
			if q.Get("signature") != Signature(c.Token, "1700000000", "987654321") || q.Get("openid") != "oyORnuP8q7ou2gfYjqLzSIWZf0rs" {
				t.Errorf("query %v lacks the plain signature or openid", q)
			}
			encrypted := mode != ModePlain
			if (q.Get("encrypt_type") == "aes") != encrypted || q.Has("msg_signature") != encrypted {
				t.Errorf("query %v: encrypt_type/msg_signature do not match mode %v", q, mode)
			}

			// Through a real query string, as the HTTP server would see it.
			parsed, err := url.ParseQuery(q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			got, gotEncrypted, err := c.Open(parsed, body)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, msg) || gotEncrypted != encrypted {
				t.Errorf("Open = (%q, %v), want (%q, %v)", got, gotEncrypted, msg, encrypted)
			}

			fields, err := XMLToMap(body)
			if err != nil {
				t.Fatalf("body is not XML: %v", err)
			}
			switch mode {
			case ModeSafe:
				if len(fields) != 2 || fields["ToUserName"] != "gh_10f6c3c3ac5a" || fields["Encrypt"] == "" {
					t.Errorf("safe body has fields %v, want only ToUserName and Encrypt", fields)
				}
			case ModeCompat:
				if fields["Content"] != "abcdteT" || fields["Encrypt"] == nil {
					t.Errorf("compat body has fields %v, want the plaintext fields and Encrypt", fields)
				}
			}
		})
	}
}

func TestSignCallbackErrors(t *testing.T) {
	tests := []struct {
		name  string
		codec *Codec
		mode  Mode
		plain string
		want  error
	}{
		{"encrypted modes need a key", newPlainCodec(t), ModeSafe, vectorC.decrypted, ErrNoAESKey},
		{"compat needs a key too", newPlainCodec(t), ModeCompat, vectorC.decrypted, ErrNoAESKey},
		{"safe mode needs XML to find ToUserName", newVectorCCodec(t), ModeSafe, "not xml", ErrMalformed},
		{"compat mode needs a closing root tag", newVectorCCodec(t), ModeCompat, "<xml/>", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := tt.codec.SignCallback(tt.mode, []byte(tt.plain), "", "1", "2"); !errors.Is(err, tt.want) {
				t.Errorf("SignCallback error = %v, want %v", err, tt.want)
			}
		})
	}
	if _, _, err := newVectorCCodec(t).SignCallback(Mode(7), []byte(vectorC.decrypted), "", "1", "2"); err == nil {
		t.Error("SignCallback accepted an unknown mode")
	}
}

func TestSealEnvelope(t *testing.T) {
	c := newVectorCCodec(t)
	reply := TextReply("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "gh_10f6c3c3ac5a", 1700000000, "您好，客服 test1 为您服务")
	env, sig, err := c.Seal(reply, "1700000001", "nonce]]>x")
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	fields, err := XMLToMap(env)
	if err != nil {
		t.Fatalf("envelope is not XML: %v", err)
	}
	enc, _ := fields["Encrypt"].(string)
	if fields["MsgSignature"] != sig || fields["TimeStamp"] != "1700000001" || fields["Nonce"] != "nonce]]>x" {
		t.Errorf("envelope fields = %v", fields)
	}
	if sig != MsgSignature(c.Token, "1700000001", "nonce]]>x", enc) {
		t.Error("MsgSignature does not cover the envelope's Encrypt")
	}
	if got, err := c.Crypter.Decrypt(enc); err != nil || !bytes.Equal(got, reply) {
		t.Errorf("Decrypt(Encrypt) = (%q, %v), want the reply", got, err)
	}

	t.Run("OpenEnvelope returns the sealed reply", func(t *testing.T) {
		got, err := c.OpenEnvelope(env)
		if err != nil || !bytes.Equal(got, reply) {
			t.Errorf("OpenEnvelope = (%q, %v)", got, err)
		}
	})
	t.Run("OpenEnvelope refuses a changed TimeStamp", func(t *testing.T) {
		tampered := bytes.Replace(env, []byte("<TimeStamp>1700000001<"), []byte("<TimeStamp>1700000002<"), 1)
		if _, err := c.OpenEnvelope(tampered); !errors.Is(err, ErrBadSignature) {
			t.Errorf("OpenEnvelope error = %v, want ErrBadSignature", err)
		}
	})
	t.Run("OpenEnvelope refuses an envelope without MsgSignature", func(t *testing.T) {
		if _, err := c.OpenEnvelope([]byte("<xml><Encrypt>" + enc + "</Encrypt></xml>")); !errors.Is(err, ErrMalformed) {
			t.Errorf("OpenEnvelope error = %v, want ErrMalformed", err)
		}
	})
	t.Run("Seal without a key is refused", func(t *testing.T) {
		if _, _, err := newPlainCodec(t).Seal(reply, "1", "2"); !errors.Is(err, ErrNoAESKey) {
			t.Errorf("Seal error = %v, want ErrNoAESKey", err)
		}
	})
}

func queryWith(q url.Values, key, value string) url.Values {
	q2 := url.Values{}
	for k, v := range q {
		q2[k] = v
	}
	if value == "" {
		q2.Del(key)
	} else {
		q2.Set(key, value)
	}
	return q2
}

func BenchmarkOpenSafe(b *testing.B) {
	c := newVectorCCodec(b)
	q, body, err := c.SignCallback(ModeSafe, []byte(vectorC.decrypted), "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "1700000000", "987654321")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := c.Open(q, body); err != nil {
			b.Fatal(err)
		}
	}
}
