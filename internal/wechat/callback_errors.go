package wechat

import "errors"

// Sentinel errors for the callback layer. Errors returned by this package wrap
// them with the failing operation; callers pick the HTTP status with errors.Is.
var (
	// ErrBadSignature means signature or msg_signature is missing or wrong (HTTP 401).
	ErrBadSignature = errors.New("wechat: bad signature")
	// ErrMalformed means the payload cannot be read: bad XML, bad base64,
	// bad padding or an impossible length (HTTP 400).
	ErrMalformed = errors.New("wechat: malformed payload")
	// ErrAppIDMismatch means the payload decrypted but was sealed for another appid.
	ErrAppIDMismatch = errors.New("wechat: appid mismatch")
	// ErrNoAESKey means the request is encrypted but no EncodingAESKey is configured.
	ErrNoAESKey = errors.New("wechat: encrypted payload but no EncodingAESKey configured")
)
