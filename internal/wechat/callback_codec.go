package wechat

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Mode is a callback message-encryption mode, as chosen in the WeChat console.
type Mode int

const (
	// ModePlain sends the message XML as is, signed by signature only.
	ModePlain Mode = iota
	// ModeCompat sends the plaintext fields and an <Encrypt> copy side by side.
	ModeCompat
	// ModeSafe sends only <ToUserName> and <Encrypt>.
	ModeSafe
)

func (m Mode) String() string {
	switch m {
	case ModePlain:
		return "plain"
	case ModeCompat:
		return "compat"
	case ModeSafe:
		return "safe"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Codec verifies and (de)seals the callback traffic of one account. It is
// safe for concurrent use.
type Codec struct {
	// Token is the callback token from the WeChat console.
	Token string
	// AppID is the account's appid.
	AppID string
	// Crypter is nil when no EncodingAESKey is configured; encrypted
	// requests are then refused with ErrNoAESKey.
	Crypter *Crypter
	// RequireEncrypted refuses plain callback POSTs with ErrBadSignature.
	// The plain signature does not cover the body, and WeChat puts it on
	// encrypted callbacks too, so anyone who sees one callback URL (an access
	// log, say) could replay its signature with a forged plaintext body. Set
	// it once the account is in compat or safe mode; leave it off while
	// switching from plain mode.
	RequireEncrypted bool
}

// NewCodec builds a Codec. An empty encodingAESKey leaves the Codec able to
// handle plain mode only.
func NewCodec(token, appID, encodingAESKey string) (*Codec, error) {
	if token == "" {
		// With an empty token anyone can compute a valid signature.
		return nil, errors.New("new codec: token is empty")
	}
	c := &Codec{Token: token, AppID: appID}
	if encodingAESKey != "" {
		crypter, err := NewCrypter(encodingAESKey, appID)
		if err != nil {
			return nil, fmt.Errorf("new codec: %w", err)
		}
		c.Crypter = crypter
	}
	return c, nil
}

// VerifyURL answers WeChat's GET URL verification and returns the body to
// echo. In plain form it checks signature over (token, timestamp, nonce) and
// returns echostr; in the WeCom form, recognised by msg_signature, it checks
// msg_signature over (token, timestamp, nonce, echostr) and returns the
// decrypted echostr.
func (c *Codec) VerifyURL(q url.Values) (string, error) {
	timestamp, nonce, echostr := q.Get("timestamp"), q.Get("nonce"), q.Get("echostr")
	if echostr == "" {
		return "", fmt.Errorf("verify url: missing echostr: %w", ErrMalformed)
	}
	if q.Has("msg_signature") {
		// base64 never contains a space; a space here is a "+" that the
		// sender left unescaped and the query decoder turned into a space.
		echostr = strings.ReplaceAll(echostr, " ", "+")
		if err := c.checkMsgSignature(q.Get("msg_signature"), timestamp, nonce, echostr); err != nil {
			return "", fmt.Errorf("verify url: %w", err)
		}
		if c.Crypter == nil {
			return "", fmt.Errorf("verify url: %w", ErrNoAESKey)
		}
		plain, err := c.Crypter.Decrypt(echostr)
		if err != nil {
			return "", fmt.Errorf("verify url: echostr: %w", err)
		}
		return string(plain), nil
	}
	if err := c.checkSignature(q.Get("signature"), timestamp, nonce); err != nil {
		return "", fmt.Errorf("verify url: %w", err)
	}
	return echostr, nil
}

// Open verifies a callback POST and returns the plaintext message XML and
// whether the request was encrypted, in which case a passive reply other
// than "success" must be sealed with Seal.
//
// A request is encrypted when encrypt_type is "aes", or when it has no
// encrypt_type but a msg_signature (WeCom's form). Encrypted requests are
// authenticated by msg_signature over the <Encrypt> value and answered with
// the decrypted message; in compat mode the plaintext copy in the body is
// ignored because the signature does not cover it.
func (c *Codec) Open(q url.Values, body []byte) (plain []byte, encrypted bool, err error) {
	encrypted, err = isEncrypted(q)
	if err != nil {
		return nil, false, fmt.Errorf("open callback: %w", err)
	}
	if !encrypted {
		if c.RequireEncrypted {
			return nil, false, fmt.Errorf("open callback: plain request but encryption is required: %w", ErrBadSignature)
		}
		if err := c.checkSignature(q.Get("signature"), q.Get("timestamp"), q.Get("nonce")); err != nil {
			return nil, false, fmt.Errorf("open callback: %w", err)
		}
		return body, false, nil
	}
	fields, err := decodeEnvelope(body)
	if err != nil {
		return nil, true, fmt.Errorf("open callback: %w", err)
	}
	encrypt, err := envelopeText(fields, "Encrypt")
	if err != nil {
		return nil, true, fmt.Errorf("open callback: %w", err)
	}
	plain, err = c.openEncrypt(q.Get("msg_signature"), q.Get("timestamp"), q.Get("nonce"), encrypt)
	if err != nil {
		return nil, true, fmt.Errorf("open callback: %w", err)
	}
	return plain, true, nil
}

// Seal encrypts plain (an encrypted passive reply, or a safe-mode callback
// the fake WeChat server sends) into WeChat's envelope
//
//	<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>
//
// and returns the envelope and its msg_signature.
func (c *Codec) Seal(plain []byte, timestamp, nonce string) (envelope []byte, msgSignature string, err error) {
	if c.Crypter == nil {
		return nil, "", fmt.Errorf("seal: %w", ErrNoAESKey)
	}
	encrypt, err := c.Crypter.Encrypt(plain)
	if err != nil {
		return nil, "", fmt.Errorf("seal: %w", err)
	}
	msgSignature = MsgSignature(c.Token, timestamp, nonce, encrypt)
	var b bytes.Buffer
	b.WriteString("<xml><Encrypt>")
	writeCDATA(&b, encrypt)
	b.WriteString("</Encrypt><MsgSignature>")
	writeCDATA(&b, msgSignature)
	b.WriteString("</MsgSignature><TimeStamp>")
	writeText(&b, timestamp)
	b.WriteString("</TimeStamp><Nonce>")
	writeCDATA(&b, nonce)
	b.WriteString("</Nonce></xml>")
	return b.Bytes(), msgSignature, nil
}

// OpenEnvelope is the receiving side of Seal: it verifies the envelope's
// MsgSignature over its own TimeStamp, Nonce and Encrypt and returns the
// decrypted message. The fake WeChat server uses it to read encrypted
// passive replies.
func (c *Codec) OpenEnvelope(envelope []byte) ([]byte, error) {
	fields, err := decodeEnvelope(envelope)
	if err != nil {
		return nil, fmt.Errorf("open envelope: %w", err)
	}
	var parts [4]string
	for i, name := range []string{"Encrypt", "MsgSignature", "TimeStamp", "Nonce"} {
		if parts[i], err = envelopeText(fields, name); err != nil {
			return nil, fmt.Errorf("open envelope: %w", err)
		}
	}
	plain, err := c.openEncrypt(parts[1], parts[2], parts[3], parts[0])
	if err != nil {
		return nil, fmt.Errorf("open envelope: %w", err)
	}
	return plain, nil
}

// SignCallback produces what WeChat would send for the callback message plain
// in the given mode: the query (signature, timestamp, nonce, openid when set,
// plus encrypt_type=aes and msg_signature when encrypted) and the body. The
// fake WeChat server uses it to send real signed callbacks.
func (c *Codec) SignCallback(mode Mode, plain []byte, openid, timestamp, nonce string) (q url.Values, body []byte, err error) {
	q = url.Values{}
	q.Set("signature", Signature(c.Token, timestamp, nonce))
	q.Set("timestamp", timestamp)
	q.Set("nonce", nonce)
	if openid != "" {
		q.Set("openid", openid)
	}
	switch mode {
	case ModePlain:
		return q, plain, nil
	case ModeCompat, ModeSafe:
	default:
		return nil, nil, fmt.Errorf("sign callback: unknown mode %v", mode)
	}
	if c.Crypter == nil {
		return nil, nil, fmt.Errorf("sign callback: %w", ErrNoAESKey)
	}
	root, fields, err := decodeXML(plain)
	if err != nil {
		return nil, nil, fmt.Errorf("sign callback: %w", err)
	}
	encrypt, err := c.Crypter.Encrypt(plain)
	if err != nil {
		return nil, nil, fmt.Errorf("sign callback: %w", err)
	}
	q.Set("encrypt_type", "aes")
	q.Set("msg_signature", MsgSignature(c.Token, timestamp, nonce, encrypt))

	var b bytes.Buffer
	if mode == ModeSafe {
		toUser, _ := fields["ToUserName"].(string)
		b.WriteString("<xml><ToUserName>")
		writeCDATA(&b, toUser)
		b.WriteString("</ToUserName><Encrypt>")
		writeCDATA(&b, encrypt)
		b.WriteString("</Encrypt></xml>")
		return q, b.Bytes(), nil
	}
	// Compat: the plaintext document with <Encrypt> added as its last child.
	closing := "</" + root + ">"
	i := bytes.LastIndex(plain, []byte(closing))
	if i < 0 {
		return nil, nil, fmt.Errorf("sign callback: compat mode needs a closing %s tag: %w", closing, ErrMalformed)
	}
	b.Write(plain[:i])
	b.WriteString("<Encrypt>")
	writeCDATA(&b, encrypt)
	b.WriteString("</Encrypt>\n")
	b.Write(plain[i:])
	return q, b.Bytes(), nil
}

// isEncrypted reads the mode from the query. WeChat documents encrypt_type
// values "aes" and "raw" (plain); a missing one means plain unless a
// msg_signature says otherwise.
func isEncrypted(q url.Values) (bool, error) {
	switch et := q.Get("encrypt_type"); et {
	case "aes":
		return true, nil
	case "raw":
		return false, nil
	case "":
		return q.Has("msg_signature"), nil
	default:
		return false, fmt.Errorf("unsupported encrypt_type %q: %w", clipForError(et, 32), ErrMalformed)
	}
}

// openEncrypt checks msg_signature before touching the ciphertext, so an
// unauthenticated request learns nothing about our key or configuration.
func (c *Codec) openEncrypt(msgSignature, timestamp, nonce, encrypt string) ([]byte, error) {
	if err := c.checkMsgSignature(msgSignature, timestamp, nonce, encrypt); err != nil {
		return nil, err
	}
	if c.Crypter == nil {
		return nil, ErrNoAESKey
	}
	return c.Crypter.Decrypt(encrypt)
}

func (c *Codec) checkSignature(got, timestamp, nonce string) error {
	if c.Token == "" {
		return fmt.Errorf("no token configured: %w", ErrBadSignature)
	}
	if got == "" {
		return fmt.Errorf("missing signature: %w", ErrBadSignature)
	}
	if !SignatureEqual(got, Signature(c.Token, timestamp, nonce)) {
		return fmt.Errorf("signature mismatch: %w", ErrBadSignature)
	}
	return nil
}

func (c *Codec) checkMsgSignature(got, timestamp, nonce, encrypt string) error {
	if c.Token == "" {
		return fmt.Errorf("no token configured: %w", ErrBadSignature)
	}
	if got == "" {
		return fmt.Errorf("missing msg_signature: %w", ErrBadSignature)
	}
	if !SignatureEqual(got, MsgSignature(c.Token, timestamp, nonce, encrypt)) {
		return fmt.Errorf("msg_signature mismatch: %w", ErrBadSignature)
	}
	return nil
}

// decodeEnvelope parses an encrypted body, whose root must be <xml>.
func decodeEnvelope(body []byte) (map[string]any, error) {
	root, fields, err := decodeXML(body)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if root != "xml" {
		return nil, fmt.Errorf("envelope: root element <%s>, want <xml>: %w", clipForError(root, 64), ErrMalformed)
	}
	return fields, nil
}

// envelopeText returns a required, non-empty leaf of an envelope.
func envelopeText(fields map[string]any, name string) (string, error) {
	s, ok := fields[name].(string)
	if !ok || s == "" {
		return "", fmt.Errorf("envelope: missing <%s>: %w", name, ErrMalformed)
	}
	return s, nil
}
