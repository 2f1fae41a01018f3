// Package wechat speaks the WeChat Official Account protocol for kefu: the
// callback layer (signatures, AES message encryption, callback parsing and
// passive replies) and the API client.
//
// # Callback modes
//
// An account chooses one of three message-encryption modes in the WeChat
// admin console, and every callback POST is checked according to it:
//
//   - Plain (明文模式): the query carries signature = sha1(sort(token,
//     timestamp, nonce)) and the body is the message XML. The signature does
//     not cover the body; it only proves the sender knows the token.
//   - Compat (兼容模式): encrypt_type=aes and msg_signature are added, and the
//     body holds both the plaintext fields and an <Encrypt> element. kefu
//     verifies msg_signature and uses the decrypted message, never the
//     plaintext copy, because only the ciphertext is covered by the signature.
//   - Safe (安全模式): the body is <xml><ToUserName/><Encrypt/></xml>;
//     msg_signature = sha1(sort(token, timestamp, nonce, Encrypt)) is checked
//     before anything is decrypted.
//
// Plain requests stay accepted when a key is configured, so an account can be
// switched between modes without downtime; [Codec.RequireEncrypted] turns
// that off once the switch is done, because a plain signature can be replayed
// with any body. Timestamps are not checked for freshness: WeChat retries with
// the same ones, and duplicates are dropped downstream by MsgId or event key.
//
// A request that was encrypted gets an encrypted passive reply ([Codec.Seal]);
// "success" needs no encryption. URL verification (GET) is plain in the
// Official Account (echostr is echoed as given); the WeCom form, with
// msg_signature and an encrypted echostr, is accepted too.
//
// # Encryption and the 32-byte padding
//
// The AES key is base64(EncodingAESKey + "="), 32 bytes, and the IV is its
// first 16 bytes (AES-256-CBC). The plaintext is
//
//	random(16) ‖ big-endian uint32 len(msg) ‖ msg ‖ appid
//
// padded with PKCS#7 to a multiple of 32 bytes, not the AES block size of 16:
// the pad byte runs from 1 to 32, and a message whose padded form ends in 32
// bytes of value 32 is valid. Implementations that assume 16-byte padding
// reject such messages, so the padding is checked here by hand with that
// range. The appid at the end of the plaintext is compared with ours so that a
// payload encrypted for another account (sharing the key by mistake) is
// refused with [ErrAppIDMismatch].
//
// # Errors
//
// Callers decide the HTTP status with errors.Is: [ErrBadSignature] → 401,
// [ErrMalformed] → 400, [ErrAppIDMismatch] → rejected, [ErrNoAESKey] → the
// account is encrypted but kefu has no KEFU_WECHAT_AES_KEY. Errors never
// contain the token, the key or an expected signature.
//
// # Parsing
//
// [ParseCallback] and [XMLToMap] read XML with encoding/xml in strict mode,
// refuse DOCTYPE declarations and undefined entities, and stop at 32 levels of
// nesting, so hostile input costs at most linear time and memory; the HTTP
// layer bounds the body size.
package wechat
