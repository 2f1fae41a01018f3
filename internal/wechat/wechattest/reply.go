package wechattest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kefu-io/kefu/internal/wechat"
)

// replyTypes are the passive reply types WeChat accepts.
var replyTypes = map[string]bool{
	"text": true, "image": true, "voice": true, "video": true, "music": true,
	"news": true, "transfer_customer_service": true,
}

type replyDoc struct {
	XMLName      xml.Name
	ToUserName   string `xml:"ToUserName"`
	FromUserName string `xml:"FromUserName"`
	CreateTime   string `xml:"CreateTime"`
	MsgType      string `xml:"MsgType"`
	Content      string `xml:"Content"`
	TransInfo    struct {
		KfAccount string `xml:"KfAccount"`
	} `xml:"TransInfo"`
	// The encrypted envelope's fields.
	Encrypt      string `xml:"Encrypt"`
	MsgSignature string `xml:"MsgSignature"`
	TimeStamp    string `xml:"TimeStamp"`
	Nonce        string `xml:"Nonce"`
}

type replyInfo struct {
	plain     []byte // the reply, decrypted when it was encrypted
	msgType   string
	kfAccount string
	problem   string // "" when WeChat would accept the reply
}

// readReply judges a receiver's answer to a callback for openid the way
// WeChat does: "success" or an empty body is fine; otherwise it must be a
// passive reply addressed to the customer from our account, encrypted in
// safe mode. The envelope is opened here with a separate implementation of
// the algorithm, so that a fault in kefu's own Seal cannot hide behind a
// shared one.
func (s *Server) readReply(openid string, body []byte) replyInfo {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "success" {
		return replyInfo{plain: body}
	}
	doc, err := parseReply(trimmed)
	if err != nil {
		return replyInfo{plain: body, problem: err.Error()}
	}
	plain := trimmed
	if doc.Encrypt != "" {
		if s.cfg.Mode == wechat.ModePlain {
			return replyInfo{plain: body, problem: "encrypted reply in plain mode"}
		}
		plain, err = s.openReplyEnvelope(doc)
		if err != nil {
			return replyInfo{plain: body, problem: err.Error()}
		}
		if doc, err = parseReply(plain); err != nil {
			return replyInfo{plain: plain, problem: "decrypted reply: " + err.Error()}
		}
	} else if s.cfg.Mode == wechat.ModeSafe {
		return replyInfo{plain: body, problem: "safe mode needs an encrypted reply"}
	}
	info := replyInfo{plain: plain, msgType: doc.MsgType, kfAccount: strings.TrimSpace(doc.TransInfo.KfAccount)}
	switch {
	case !replyTypes[doc.MsgType]:
		info.problem = fmt.Sprintf("reply MsgType %q is not a passive reply type", doc.MsgType)
	case doc.ToUserName != openid:
		info.problem = "reply ToUserName is not the customer's openid"
	case doc.FromUserName != s.cfg.OriginalID:
		info.problem = "reply FromUserName is not the account's original id"
	case !isDecimal(doc.CreateTime):
		info.problem = "reply CreateTime is not a number"
	case doc.MsgType == "text" && doc.Content == "":
		info.problem = "text reply without Content"
	}
	return info
}

func parseReply(b []byte) (replyDoc, error) {
	var doc replyDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		return doc, fmt.Errorf("reply is neither success nor XML: %w", err)
	}
	if doc.XMLName.Local != "xml" {
		return doc, fmt.Errorf("reply root is <%s>, want <xml>", doc.XMLName.Local)
	}
	return doc, nil
}

func isDecimal(s string) bool {
	_, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return err == nil
}

// openReplyEnvelope checks MsgSignature = sha1(sort(token, TimeStamp,
// Nonce, Encrypt)) and decrypts Encrypt: AES-256-CBC, key =
// base64(EncodingAESKey+"="), IV = key[:16], PKCS#7 padding to 32 bytes,
// plaintext = random(16) ‖ BE uint32 length ‖ message ‖ appid.
func (s *Server) openReplyEnvelope(doc replyDoc) ([]byte, error) {
	parts := []string{s.cfg.Token, doc.TimeStamp, doc.Nonce, doc.Encrypt}
	slices.Sort(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(doc.MsgSignature)) != 1 {
		return nil, errors.New("reply MsgSignature does not match")
	}
	key, err := base64.StdEncoding.DecodeString(s.cfg.EncodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, errors.New("EncodingAESKey is not 43 base64 characters")
	}
	ct, err := base64.StdEncoding.DecodeString(doc.Encrypt)
	if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errors.New("reply Encrypt is not a whole number of AES blocks in base64")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("reply cipher: %w", err)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, key[:aes.BlockSize]).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > 32 || pad > len(pt) {
		return nil, errors.New("reply padding is invalid")
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, errors.New("reply padding is invalid")
		}
	}
	pt = pt[:len(pt)-pad]
	if len(pt) < 20 {
		return nil, errors.New("reply plaintext is too short")
	}
	n := binary.BigEndian.Uint32(pt[16:20])
	if uint64(n) > uint64(len(pt)-20) {
		return nil, errors.New("reply length field exceeds the plaintext")
	}
	msg, appID := pt[20:20+n], pt[20+n:]
	if string(appID) != s.cfg.AppID {
		return nil, errors.New("reply is sealed for another appid")
	}
	return msg, nil
}
