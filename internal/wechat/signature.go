package wechat

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
)

// Signature is the plain-mode callback signature: the hex SHA-1 of token,
// timestamp and nonce sorted and concatenated.
func Signature(token, timestamp, nonce string) string {
	return sortedSHA1(token, timestamp, nonce)
}

// MsgSignature is the encrypted-mode signature: the hex SHA-1 of token,
// timestamp, nonce and the base64 Encrypt value sorted and concatenated.
func MsgSignature(token, timestamp, nonce, encrypt string) string {
	return sortedSHA1(token, timestamp, nonce, encrypt)
}

// SignatureEqual compares two signatures in constant time, so the time a
// failed check takes does not reveal how many leading characters matched.
func SignatureEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func sortedSHA1(parts ...string) string {
	slices.Sort(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}
