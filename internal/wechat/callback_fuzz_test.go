package wechat

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
)

// The seed corpora below run as ordinary tests; `go test -fuzz FuzzX` explores
// from them. Every target checks that hostile input yields one of the
// sentinel errors, never a panic or an unclassified failure.

func FuzzParseCallback(f *testing.F) {
	for _, file := range callbackFiles(f) {
		doc, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
	}
	f.Add([]byte(vectorC.decrypted))
	f.Add([]byte(nestedDoc(40)))
	f.Add([]byte(`<!DOCTYPE xml [<!ENTITY x "y">]><xml>&x;</xml>`))
	f.Add([]byte("<xml><A>1</A><A>2</A><A><B/></A></xml>"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cb, err := ParseCallback(doc)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseCallback error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if cb.ToUserName == "" || cb.FromUserName == "" || cb.MsgType == "" || cb.Fields == nil {
			t.Fatalf("ParseCallback accepted a callback missing required fields: %+v", cb)
		}
		if cb.Event != strings.ToLower(cb.Event) {
			t.Fatalf("Event %q is not lower-case", cb.Event)
		}
		if _, err := json.Marshal(cb); err != nil {
			t.Fatalf("a parsed callback does not marshal: %v", err)
		}
	})
}

func FuzzDecrypt(f *testing.F) {
	f.Add(vectorC.encrypt)
	f.Add(vectorB.echostr)
	f.Add("")
	f.Add("====")
	f.Add(encodeB64(make([]byte, 32)))
	f.Add(vectorC.encrypt[:len(vectorC.encrypt)-4])
	c := newTestCrypter(f, vectorC.aesKey, vectorC.appID)
	f.Fuzz(func(t *testing.T, payload string) {
		msg, err := c.Decrypt(payload)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAppIDMismatch) {
				t.Fatalf("Decrypt error %v is neither ErrMalformed nor ErrAppIDMismatch", err)
			}
			return
		}
		// Whatever decrypts must survive a fresh round trip.
		enc, err := c.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.Decrypt(enc)
		if err != nil || string(again) != string(msg) {
			t.Fatalf("round trip of a decrypted message = (%q, %v), want %q", again, err, msg)
		}
	})
}

func FuzzOpen(f *testing.F) {
	c := newVectorCCodec(f)
	f.Add(vectorCQuery().Encode(), []byte("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA["+vectorC.encrypt+"]]></Encrypt></xml>"))
	for _, mode := range []Mode{ModePlain, ModeCompat, ModeSafe} {
		for _, file := range callbackFiles(f)[:3] {
			doc, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			q, body, err := c.SignCallback(mode, doc, "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "1700000000", "12345")
			if err != nil {
				f.Fatal(err)
			}
			f.Add(q.Encode(), body)
		}
	}
	f.Add("encrypt_type=aes&msg_signature=x", []byte("<xml><Encrypt>AAAA</Encrypt></xml>"))
	f.Add("encrypt_type=what", []byte("<xml/>"))
	f.Add("%zz", []byte{})
	f.Fuzz(func(t *testing.T, rawQuery string, body []byte) {
		q, _ := url.ParseQuery(rawQuery) // keep whatever parsed, as net/http does
		plain, _, err := c.Open(q, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) &&
				!errors.Is(err, ErrAppIDMismatch) && !errors.Is(err, ErrNoAESKey) {
				t.Fatalf("Open error %v wraps no sentinel", err)
			}
			if plain != nil {
				t.Fatalf("Open returned a message along with %v", err)
			}
			return
		}
		_, _ = ParseCallback(plain)
	})
}
