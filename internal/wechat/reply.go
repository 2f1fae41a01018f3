package wechat

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SuccessReply is the body that acknowledges a callback without a passive
// reply. WeChat shows the customer an error for anything that is neither this,
// an empty body nor a valid reply document.
const SuccessReply = "success"

// TextReply builds a passive text reply from the account (fromUser) to the
// customer (toUser).
func TextReply(toUser, fromUser string, createTime int64, content string) []byte {
	var b bytes.Buffer
	writeReplyHeader(&b, toUser, fromUser, createTime, "text")
	b.WriteString("<Content>")
	writeCDATA(&b, content)
	b.WriteString("</Content></xml>")
	return b.Bytes()
}

// TransferCustomerServiceReply builds the passive reply that hands the
// customer to 多客服: to the given agent when kfAccount is set, otherwise to
// the shared queue.
func TransferCustomerServiceReply(toUser, fromUser string, createTime int64, kfAccount string) []byte {
	var b bytes.Buffer
	writeReplyHeader(&b, toUser, fromUser, createTime, "transfer_customer_service")
	if kfAccount != "" {
		b.WriteString("<TransInfo><KfAccount>")
		writeCDATA(&b, kfAccount)
		b.WriteString("</KfAccount></TransInfo>")
	}
	b.WriteString("</xml>")
	return b.Bytes()
}

func writeReplyHeader(b *bytes.Buffer, toUser, fromUser string, createTime int64, msgType string) {
	b.WriteString("<xml><ToUserName>")
	writeCDATA(b, toUser)
	b.WriteString("</ToUserName><FromUserName>")
	writeCDATA(b, fromUser)
	b.WriteString("</FromUserName><CreateTime>")
	b.WriteString(strconv.FormatInt(createTime, 10))
	b.WriteString("</CreateTime><MsgType>")
	writeCDATA(b, msgType)
	b.WriteString("</MsgType>")
}

// writeCDATA writes s as CDATA, the form WeChat's own documents use. A "]]>"
// inside s is split across two sections so it cannot close the first one
// early, and characters XML cannot carry at all become U+FFFD.
func writeCDATA(b *bytes.Buffer, s string) {
	s = xmlSafe(s)
	b.WriteString("<![CDATA[")
	b.WriteString(strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>"))
	b.WriteString("]]>")
}

// writeText writes s as escaped character data.
func writeText(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // writes to a bytes.Buffer cannot fail
}

// xmlSafe replaces invalid UTF-8 and characters outside the XML 1.0 Char
// production with U+FFFD.
func xmlSafe(s string) string {
	ok := utf8.ValidString(s)
	if ok {
		for _, r := range s {
			if !isXMLChar(r) {
				ok = false
				break
			}
		}
	}
	if ok {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isXMLChar(r) {
			return r
		}
		return utf8.RuneError
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
