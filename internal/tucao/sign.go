package tucao

import (
	"crypto/md5"
	"encoding/hex"
)

// Sign returns the Signature header for a request: the lower-case hex md5 of
// the timestamp string followed by the secret. The example in Tucao's API documentation,
// Sign("1539854769", "tucao123"), is "ad22dba05d9cdf7876a15ecf58861d1c".
func Sign(timestamp, secret string) string {
	sum := md5.Sum([]byte(timestamp + secret))
	return hex.EncodeToString(sum[:])
}
