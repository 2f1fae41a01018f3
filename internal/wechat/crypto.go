package wechat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

const (
	// encodingAESKeyLen is the length of the EncodingAESKey shown in the
	// WeChat console: 43 base64 characters, 32 bytes once "=" is appended.
	encodingAESKeyLen = 43
	// randomLen is the random prefix of every encrypted plaintext.
	randomLen = 16
	// padBlock is WeChat's PKCS#7 block size: 32 bytes, twice the AES block.
	padBlock = 32
	// headerLen is the random prefix plus the big-endian message length.
	headerLen = randomLen + 4
)

// Crypter seals and opens WeChat's AES-256-CBC message payloads for one
// account. It is safe for concurrent use.
type Crypter struct {
	block cipher.Block
	iv    []byte
	appID string
}

// NewCrypter builds a Crypter from the 43-character EncodingAESKey and the
// appid (for WeCom, the receiveid) that every payload must end with.
func NewCrypter(encodingAESKey, appID string) (*Crypter, error) {
	if len(encodingAESKey) != encodingAESKeyLen {
		return nil, fmt.Errorf("new crypter: EncodingAESKey must be %d characters, got %d", encodingAESKeyLen, len(encodingAESKey))
	}
	// StdEncoding is deliberately not Strict: the 43rd character carries two
	// spare bits that WeChat does not zero (the official sample key ends in "G").
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, errors.New("new crypter: EncodingAESKey is not valid base64")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new crypter: %w", err)
	}
	return &Crypter{block: block, iv: key[:aes.BlockSize], appID: appID}, nil
}

// AppID returns the appid payloads are sealed for and checked against.
func (c *Crypter) AppID() string { return c.appID }

// Encrypt seals msg with a fresh random prefix from crypto/rand and returns
// the base64 ciphertext (the Encrypt element's value).
func (c *Crypter) Encrypt(msg []byte) (string, error) {
	random := make([]byte, randomLen)
	if _, err := rand.Read(random); err != nil {
		return "", fmt.Errorf("encrypt: random prefix: %w", err)
	}
	return c.EncryptWithRandom(random, msg)
}

// EncryptWithRandom seals msg with the given 16-byte random prefix. Real
// traffic uses Encrypt; this exists so test vectors can be reproduced exactly.
func (c *Crypter) EncryptWithRandom(random []byte, msg []byte) (string, error) {
	if len(random) != randomLen {
		return "", fmt.Errorf("encrypt: random prefix must be %d bytes, got %d", randomLen, len(random))
	}
	if uint64(len(msg)) > math.MaxUint32 {
		return "", fmt.Errorf("encrypt: message of %d bytes does not fit the 32-bit length field", len(msg))
	}
	n := headerLen + len(msg) + len(c.appID)
	pad := padBlock - n%padBlock // 1..32: a full block of 32 when n is aligned
	buf := make([]byte, 0, n+pad)
	buf = append(buf, random...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(msg)))
	buf = append(buf, msg...)
	buf = append(buf, c.appID...)
	for range pad {
		buf = append(buf, byte(pad))
	}
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf), nil
}

// Decrypt opens a base64 payload and returns the message. The trailing appid
// must be ours, or the error wraps ErrAppIDMismatch; anything that cannot be a
// well-formed payload wraps ErrMalformed.
func (c *Crypter) Decrypt(b64 string) ([]byte, error) {
	msg, appID, err := c.DecryptAny(b64)
	if err != nil {
		return nil, err
	}
	if appID != c.appID {
		return nil, fmt.Errorf("decrypt: payload sealed for appid %q: %w", clipForError(appID, 64), ErrAppIDMismatch)
	}
	return msg, nil
}

// DecryptAny opens a base64 payload without checking whom it was sealed for
// and returns the message and the trailing appid.
func (c *Crypter) DecryptAny(b64 string) (msg []byte, appID string, err error) {
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, "", fmt.Errorf("decrypt: base64: %v: %w", err, ErrMalformed)
	}
	// Every valid payload is padded to whole 32-byte blocks, so any other
	// length (including 16-byte padding from a non-conforming sender) is junk.
	if len(ct) == 0 || len(ct)%padBlock != 0 {
		return nil, "", fmt.Errorf("decrypt: ciphertext of %d bytes is not a positive multiple of %d: %w", len(ct), padBlock, ErrMalformed)
	}
	// ct is this call's own buffer, fresh from the base64 decoder, so it is
	// decrypted in place (CBC allows dst == src) instead of into a copy.
	pt := ct
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(pt, ct)

	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > padBlock {
		return nil, "", fmt.Errorf("decrypt: padding byte %d outside 1..%d: %w", pad, padBlock, ErrMalformed)
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, "", fmt.Errorf("decrypt: inconsistent PKCS#7 padding: %w", ErrMalformed)
		}
	}
	pt = pt[:len(pt)-pad]
	if len(pt) < headerLen {
		return nil, "", fmt.Errorf("decrypt: plaintext of %d bytes is shorter than its header: %w", len(pt), ErrMalformed)
	}
	msgLen := uint64(binary.BigEndian.Uint32(pt[randomLen:headerLen]))
	if msgLen > uint64(len(pt)-headerLen) {
		return nil, "", fmt.Errorf("decrypt: message length %d exceeds the %d bytes present: %w", msgLen, len(pt)-headerLen, ErrMalformed)
	}
	end := headerLen + int(msgLen)
	return pt[headerLen:end:end], string(pt[end:]), nil
}

// clipForError keeps attacker-controlled values short in error messages.
func clipForError(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
