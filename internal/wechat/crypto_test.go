package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Vectors from WeChat's message encryption documentation and its sample
// code, copied here in full.
var (
	vectorC = struct {
		token, aesKey, appID, timestamp, nonce, msgSignature, encrypt, random, decrypted string
	}{
		token:        "spamtest",
		aesKey:       "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
		appID:        "wx2c2769f8efd9abc2",
		timestamp:    "1409735669",
		nonce:        "1320562132",
		msgSignature: "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
		encrypt:      "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=",
		// The official Python sample draws its prefix from letters and digits,
		// so the 16 random bytes are these 16 ASCII characters.
		random: "89465c840c5f116f",
		decrypted: "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n" +
			"<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n" +
			"<CreateTime>1409735668</CreateTime>\n" +
			"<MsgType><![CDATA[text]]></MsgType>\n" +
			"<Content><![CDATA[abcdteT]]></Content>\n" +
			"<MsgId>6054768590064713728</MsgId>\n" +
			"</xml>",
	}
	vectorB = struct {
		token, aesKey, receiveID, timestamp, nonce, msgSignature, echostr, plain string
	}{
		token:        "QDG6eK",
		aesKey:       "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
		receiveID:    "wx5823bf96d3bd56c7",
		timestamp:    "1409659589",
		nonce:        "263014780",
		msgSignature: "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
		echostr:      "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
		plain:        "1616140317555161061",
	}
)

func newTestCrypter(t testing.TB, key, appID string) *Crypter {
	t.Helper()
	c, err := NewCrypter(key, appID)
	if err != nil {
		t.Fatalf("NewCrypter: %v", err)
	}
	return c
}

func TestCrypterVectorC(t *testing.T) {
	c := newTestCrypter(t, vectorC.aesKey, vectorC.appID)
	if len(vectorC.decrypted) != 280 {
		t.Fatalf("vector transcription: decrypted is %d bytes, want 280", len(vectorC.decrypted))
	}

	t.Run("decrypts the official sample to the exact plaintext", func(t *testing.T) {
		got, err := c.Decrypt(vectorC.encrypt)
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if string(got) != vectorC.decrypted {
			t.Errorf("Decrypt = %q, want %q", got, vectorC.decrypted)
		}
	})
	t.Run("DecryptAny reports the trailing appid", func(t *testing.T) {
		msg, appID, err := c.DecryptAny(vectorC.encrypt)
		if err != nil {
			t.Fatalf("DecryptAny: %v", err)
		}
		if appID != vectorC.appID || string(msg) != vectorC.decrypted {
			t.Errorf("DecryptAny = (%d bytes, %q), want (280 bytes, %q)", len(msg), appID, vectorC.appID)
		}
	})
	t.Run("the sample uses a pad of 2", func(t *testing.T) {
		pt := rawDecrypt(t, vectorC.aesKey, vectorC.encrypt)
		if !bytes.HasSuffix(pt, []byte{2, 2}) || pt[len(pt)-3] == 2 {
			t.Errorf("plaintext ends in %v, want exactly two bytes of 2", pt[len(pt)-3:])
		}
	})
	t.Run("re-encrypting with the sample's random prefix reproduces Encrypt", func(t *testing.T) {
		got, err := c.EncryptWithRandom([]byte(vectorC.random), []byte(vectorC.decrypted))
		if err != nil {
			t.Fatalf("EncryptWithRandom: %v", err)
		}
		if got != vectorC.encrypt {
			t.Errorf("EncryptWithRandom =\n%s\nwant\n%s", got, vectorC.encrypt)
		}
	})
}

func TestCrypterVectorB(t *testing.T) {
	c := newTestCrypter(t, vectorB.aesKey, vectorB.receiveID)
	got, err := c.Decrypt(vectorB.echostr)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if string(got) != vectorB.plain {
		t.Errorf("Decrypt = %q, want %q", got, vectorB.plain)
	}
}

// TestCrypterPadsTo32Bytes drives every pad value from 1 to 32 and checks the
// padding with an independent AES-CBC decryption.
func TestCrypterPadsTo32Bytes(t *testing.T) {
	c := newTestCrypter(t, vectorC.aesKey, vectorC.appID)
	random := []byte(vectorC.random)
	for pad := 1; pad <= 32; pad++ {
		// 20 header bytes + msg + appid + pad must be a multiple of 32.
		msgLen := ((32-pad-headerLen-len(vectorC.appID))%32 + 64) % 32
		for _, extra := range []int{0, 32} {
			msg := bytes.Repeat([]byte("客"), (msgLen+extra)/3+1)[:msgLen+extra]
			t.Run(fmt.Sprintf("pad %d with %d-byte message", pad, len(msg)), func(t *testing.T) {
				enc, err := c.EncryptWithRandom(random, msg)
				if err != nil {
					t.Fatalf("EncryptWithRandom: %v", err)
				}
				pt := rawDecrypt(t, vectorC.aesKey, enc)
				if len(pt)%32 != 0 {
					t.Fatalf("padded plaintext is %d bytes, not a multiple of 32", len(pt))
				}
				if !bytes.Equal(pt[len(pt)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
					t.Fatalf("plaintext tail %v, want %d bytes of %d", pt[len(pt)-pad:], pad, pad)
				}
				got, err := c.Decrypt(enc)
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				if !bytes.Equal(got, msg) {
					t.Errorf("round trip = %q, want %q", got, msg)
				}
			})
		}
	}
}

func TestCrypterRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		appID string
		msg   []byte
	}{
		{"empty message", vectorC.appID, []byte{}},
		{"message ending in spaces (byte 32) keeps them when the pad is a full block", "", []byte("abcdefghij  ")},
		{"message of bytes 32 with an empty appid", "", bytes.Repeat([]byte{32}, 44)},
		{"binary message with NUL and 0xff", vectorC.appID, []byte{0, 1, 2, 0xff, 32, 32}},
		{"large message", vectorC.appID, bytes.Repeat([]byte("<xml>多客服</xml>"), 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCrypter(t, vectorC.aesKey, tt.appID)
			a, err := c.Encrypt(tt.msg)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			b, err := c.Encrypt(tt.msg)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if a == b {
				t.Error("two encryptions of one message are identical; the random prefix is not random")
			}
			for _, enc := range []string{a, b} {
				got, err := c.Decrypt(enc)
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				if !bytes.Equal(got, tt.msg) {
					t.Errorf("round trip = %q, want %q", got, tt.msg)
				}
			}
		})
	}
}

func TestCrypterRejects(t *testing.T) {
	c := newTestCrypter(t, vectorC.aesKey, vectorC.appID)
	other := newTestCrypter(t, vectorC.aesKey, "wx0000000000000000")
	fromOther, err := other.Encrypt([]byte("<xml/>"))
	if err != nil {
		t.Fatal(err)
	}
	sampleCT, _ := base64.StdEncoding.DecodeString(vectorC.encrypt)
	tamper := func(i int) string {
		ct := bytes.Clone(sampleCT)
		ct[i] ^= 1
		return base64.StdEncoding.EncodeToString(ct)
	}
	// In CBC, flipping ciphertext byte i flips plaintext byte i+16 (and
	// garbles the 16-byte block holding i). Offsets in the sample: header
	// 0..19, message 20..299, appid 300..317, padding 318..319.
	const appIDOffset = headerLen + 280

	tests := []struct {
		name    string
		payload string
		want    error
	}{
		{"invalid base64 is malformed", "not base64!!", ErrMalformed},
		{"empty payload is malformed", "", ErrMalformed},
		{"16-byte ciphertext is malformed", encodeB64(make([]byte, 16)), ErrMalformed},
		{"48-byte ciphertext is malformed", encodeB64(make([]byte, 48)), ErrMalformed},
		{"16-byte padding from a non-conforming sender is malformed", sealRaw(t, pkcs7(craftPlaintext(2, 2, vectorC.appID), 16)), ErrMalformed},
		{"pad byte 0 is malformed", sealRaw(t, withLastByte(pkcs7(craftPlaintext(5, 5, vectorC.appID), 32), 0)), ErrMalformed},
		{"pad byte 33 is malformed", sealRaw(t, append(craftPlaintext(25, 25, vectorC.appID), bytes.Repeat([]byte{33}, 33)...)), ErrMalformed},
		{"pad bytes that disagree are malformed", sealRaw(t, withByteFromEnd(pkcs7(craftPlaintext(5, 5, vectorC.appID), 32), 2, 9)), ErrMalformed},
		{"declared length beyond the plaintext is malformed", sealRaw(t, pkcs7(craftPlaintext(10, 1000, vectorC.appID), 32)), ErrMalformed},
		{"plaintext shorter than its header is malformed", sealRaw(t, pkcs7([]byte("0123456789"), 32)), ErrMalformed},
		{"flipping a bit in the first block corrupts the length field", tamper(0), ErrMalformed},
		{"flipping a bit that lands on the padding breaks it", tamper(len(sampleCT) - 1 - aes.BlockSize), ErrMalformed},
		{"flipping a bit before the appid changes the appid", tamper(appIDOffset - aes.BlockSize), ErrAppIDMismatch},
		{"payload sealed for another appid is refused", fromOther, ErrAppIDMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := c.Decrypt(tt.payload)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decrypt error = %v, want %v", err, tt.want)
			}
			if msg != nil {
				t.Errorf("Decrypt returned %q along with an error", msg)
			}
		})
	}

	t.Run("DecryptAny accepts another appid and reports it", func(t *testing.T) {
		msg, appID, err := c.DecryptAny(fromOther)
		if err != nil || appID != "wx0000000000000000" || string(msg) != "<xml/>" {
			t.Errorf("DecryptAny = (%q, %q, %v)", msg, appID, err)
		}
	})
}

func TestNewCrypterRejectsBadKeys(t *testing.T) {
	tests := []struct {
		name string
		key  string
	}{
		{"empty key", ""},
		{"42 characters", vectorC.aesKey[:42]},
		{"44 characters", vectorC.aesKey + "="},
		{"43 characters outside the base64 alphabet", strings.Repeat("*", 43)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCrypter(tt.key, vectorC.appID)
			if err == nil {
				t.Fatalf("NewCrypter accepted %q", tt.key)
			}
			if tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q contains the key", err)
			}
			if c != nil {
				t.Error("NewCrypter returned a Crypter along with an error")
			}
		})
	}
}

func TestEncryptWithRandomNeeds16Bytes(t *testing.T) {
	c := newTestCrypter(t, vectorC.aesKey, vectorC.appID)
	for _, n := range []int{0, 15, 17} {
		if _, err := c.EncryptWithRandom(make([]byte, n), []byte("x")); err == nil {
			t.Errorf("EncryptWithRandom accepted a %d-byte prefix", n)
		}
	}
}

// craftPlaintext builds an unpadded plaintext with a message of msgLen bytes whose
// length field says declared.
func craftPlaintext(msgLen, declared int, appID string) []byte {
	b := []byte(vectorC.random)
	b = binary.BigEndian.AppendUint32(b, uint32(declared))
	b = append(b, bytes.Repeat([]byte("m"), msgLen)...)
	return append(b, appID...)
}

// pkcs7 pads independently of the code under test.
func pkcs7(b []byte, block int) []byte {
	n := block - len(b)%block
	return append(b, bytes.Repeat([]byte{byte(n)}, n)...)
}

func withLastByte(b []byte, v byte) []byte { return withByteFromEnd(b, 1, v) }

func withByteFromEnd(b []byte, fromEnd int, v byte) []byte {
	b[len(b)-fromEnd] = v
	return b
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// sealRaw encrypts an already padded plaintext with vector C's key, so tests
// can build payloads the Crypter itself would never produce.
func sealRaw(t testing.TB, pt []byte) string {
	t.Helper()
	key, iv := rawKey(t, vectorC.aesKey)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
	return encodeB64(ct)
}

// rawDecrypt decrypts without removing padding or checking anything.
func rawDecrypt(t testing.TB, aesKey, payload string) []byte {
	t.Helper()
	key, iv := rawKey(t, aesKey)
	ct, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	return pt
}

func rawKey(t testing.TB, aesKey string) (key, iv []byte) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(aesKey + "=")
	if err != nil {
		t.Fatal(err)
	}
	return key, key[:16]
}
