package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// baselineSubject is where the baseline publishes; its stream captures
// "baseline.>".
const baselineSubject = "baseline.wechat.message"

// baseline is the least a correct callback endpoint must do, written
// without any of kefu's code: check the signature, parse the XML into a
// small struct, publish synchronously to JetStream with Nats-Msg-Id so
// retries are dropped, answer "success". In safe mode it must also check
// msg_signature and decrypt, or it could not read the MsgId.
//
// Like kefu it refuses a timestamp more than five minutes from its clock.
// With sigs set (-baseline-guard) it also does what kefu does in plain mode
// so that a signature cannot carry a second body: it creates a key for the
// signature holding the SHA-256 of the body in a KV bucket, and on a key
// that exists compares the hash.
type baseline struct {
	token string
	js    jetstream.JetStream
	block cipher.Block // nil: plain mode only
	iv    []byte
	appID string
	sigs  jetstream.KeyValue // nil: no replay guard
}

// baselineWindow is the baseline's freshness window, kefu's default.
const baselineWindow = 5 * 60

func newBaseline(js jetstream.JetStream, token, appID, aesKey string, sigs jetstream.KeyValue) (*baseline, error) {
	b := &baseline{token: token, js: js, appID: appID, sigs: sigs}
	if aesKey != "" {
		key, err := base64.StdEncoding.DecodeString(aesKey + "=")
		if err != nil || len(key) != 32 {
			return nil, errors.New("baseline: bad EncodingAESKey")
		}
		if b.block, err = aes.NewCipher(key); err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		b.iv = key[:aes.BlockSize]
	}
	return b, nil
}

type baselineMessage struct {
	ToUserName   string `xml:"ToUserName"`
	FromUserName string `xml:"FromUserName"`
	CreateTime   int64  `xml:"CreateTime"`
	MsgType      string `xml:"MsgType"`
	Content      string `xml:"Content"`
	MsgID        int64  `xml:"MsgId"`
}

type baselineEnvelope struct {
	Encrypt string `xml:"Encrypt"`
}

func (b *baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	timestamp, nonce := q.Get("timestamp"), q.Get("nonce")
	if ts, err := strconv.ParseInt(timestamp, 10, 64); err != nil || ts < time.Now().Unix()-baselineWindow || ts > time.Now().Unix()+baselineWindow {
		http.Error(w, "stale timestamp", http.StatusUnauthorized)
		return
	}
	plain := body
	if q.Get("encrypt_type") == "aes" {
		var env baselineEnvelope
		if err := xml.Unmarshal(body, &env); err != nil || env.Encrypt == "" {
			http.Error(w, "malformed envelope", http.StatusBadRequest)
			return
		}
		if !signatureMatches(q.Get("msg_signature"), b.token, timestamp, nonce, env.Encrypt) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if plain, err = b.decrypt(env.Encrypt); err != nil {
			http.Error(w, "cannot decrypt", http.StatusBadRequest)
			return
		}
	} else if !signatureMatches(q.Get("signature"), b.token, timestamp, nonce) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	} else if b.sigs != nil {
		sum := sha256.Sum256(body)
		if _, err := b.sigs.Create(r.Context(), "sig."+q.Get("signature"), sum[:]); errors.Is(err, jetstream.ErrKeyExists) {
			e, err := b.sigs.Get(r.Context(), "sig."+q.Get("signature"))
			if err != nil {
				http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
				return
			}
			if !bytes.Equal(e.Value(), sum[:]) {
				http.Error(w, "signature already used", http.StatusUnauthorized)
				return
			}
		} else if err != nil {
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	var m baselineMessage
	if err := xml.Unmarshal(plain, &m); err != nil || m.MsgID == 0 {
		http.Error(w, "malformed callback", http.StatusBadRequest)
		return
	}
	msg := &nats.Msg{Subject: baselineSubject, Data: plain, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, "wx-msg-"+strconv.FormatInt(m.MsgID, 10))
	if _, err := b.js.PublishMsg(r.Context(), msg); err != nil {
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "success")
}

// signatureMatches checks WeChat's signature: the hex SHA-1 of the sorted,
// concatenated parts, compared in constant time.
func signatureMatches(got string, parts ...string) bool {
	slices.Sort(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return subtle.ConstantTimeCompare([]byte(got), []byte(hex.EncodeToString(sum[:]))) == 1
}

// decrypt opens WeChat's AES-256-CBC payload: 16 random bytes, a 4-byte
// big-endian length, the message, the appid, PKCS#7 padding to 32 bytes.
func (b *baseline) decrypt(b64 string) ([]byte, error) {
	if b.block == nil {
		return nil, errors.New("no AES key")
	}
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(ct) == 0 || len(ct)%32 != 0 {
		return nil, errors.New("bad ciphertext")
	}
	cipher.NewCBCDecrypter(b.block, b.iv).CryptBlocks(ct, ct)
	pad := int(ct[len(ct)-1])
	if pad < 1 || pad > 32 || len(ct)-pad < 20 {
		return nil, errors.New("bad padding")
	}
	pt := ct[:len(ct)-pad]
	n := int(binary.BigEndian.Uint32(pt[16:20]))
	if n > len(pt)-20 || string(pt[20+n:]) != b.appID {
		return nil, errors.New("bad payload")
	}
	return pt[20 : 20+n], nil
}
