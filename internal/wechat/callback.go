package wechat

import (
	"fmt"
	"strconv"
	"strings"
)

// Callback is one parsed message or event from a plaintext callback.
type Callback struct {
	ToUserName   string `json:"to_user_name"`
	FromUserName string `json:"from_user_name"`
	CreateTime   int64  `json:"create_time"`
	// MsgType is as sent, e.g. "text", "image", "event".
	MsgType string `json:"msg_type"`
	// Event is the lower-cased event name when MsgType is "event"
	// ("subscribe", "scan", "kf_create_session", ...), "" otherwise.
	Event string `json:"event,omitempty"`
	// MsgID is the MsgId of a message, 0 when absent: WeChat documents it as
	// a 64-bit integer, and it is read as the unsigned one (up to
	// 18446744073709551615). The job-finish events carry a different <MsgID>
	// (the job's id); it stays in Fields only so a job id is never taken for
	// a message id. Encoded as a JSON string because message ids exceed the
	// integers JavaScript can hold.
	MsgID uint64 `json:"msg_id,string,omitempty"`
	// KfAccount, FromKfAccount and ToKfAccount are set by the 多客服
	// session events (kf_create_session, kf_close_session, kf_switch_session).
	KfAccount     string `json:"kf_account,omitempty"`
	FromKfAccount string `json:"from_kf_account,omitempty"`
	ToKfAccount   string `json:"to_kf_account,omitempty"`
	// Content is the text of a text message.
	Content string `json:"content,omitempty"`
	// Fields holds every element of the document as XMLToMap returns it, so
	// nothing WeChat sends is lost even when no field above names it.
	Fields map[string]any `json:"fields"`
}

// ParseCallback parses a plaintext callback document: every message type and
// event of the Official Account and 多客服. The root must be <xml> and
// ToUserName, FromUserName, CreateTime and MsgType must be present (Event too
// for MsgType event), or the error wraps ErrMalformed.
func ParseCallback(plain []byte) (*Callback, error) {
	root, fields, err := decodeXML(plain)
	if err != nil {
		return nil, fmt.Errorf("parse callback: %w", err)
	}
	if root != "xml" {
		return nil, fmt.Errorf("parse callback: root element <%s>, want <xml>: %w", clipForError(root, 64), ErrMalformed)
	}
	cb := &Callback{Fields: fields}
	for _, req := range []struct {
		name string
		dst  *string
	}{
		{"ToUserName", &cb.ToUserName},
		{"FromUserName", &cb.FromUserName},
		{"MsgType", &cb.MsgType},
	} {
		if *req.dst, err = requiredText(fields, req.name); err != nil {
			return nil, err
		}
	}
	createTime, err := requiredText(fields, "CreateTime")
	if err != nil {
		return nil, err
	}
	if cb.CreateTime, err = strconv.ParseInt(strings.TrimSpace(createTime), 10, 64); err != nil {
		return nil, fmt.Errorf("parse callback: CreateTime %q is not an integer: %w", clipForError(createTime, 32), ErrMalformed)
	}

	if strings.EqualFold(cb.MsgType, "event") {
		event, err := requiredText(fields, "Event")
		if err != nil {
			return nil, err
		}
		cb.Event = strings.ToLower(strings.TrimSpace(event))
	}
	if msgID, ok := fields["MsgId"]; ok {
		s, _ := msgID.(string)
		if cb.MsgID, err = strconv.ParseUint(strings.TrimSpace(s), 10, 64); err != nil {
			return nil, fmt.Errorf("parse callback: MsgId %q is not an unsigned 64-bit integer: %w", clipForError(s, 32), ErrMalformed)
		}
	}
	cb.KfAccount = optionalText(fields, "KfAccount")
	cb.FromKfAccount = optionalText(fields, "FromKfAccount")
	cb.ToKfAccount = optionalText(fields, "ToKfAccount")
	cb.Content = optionalText(fields, "Content")
	return cb, nil
}

// requiredText returns a leaf element's text, which must be non-blank.
func requiredText(fields map[string]any, name string) (string, error) {
	v, ok := fields[name]
	if !ok {
		return "", fmt.Errorf("parse callback: missing <%s>: %w", name, ErrMalformed)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("parse callback: <%s> is not a single text element: %w", name, ErrMalformed)
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("parse callback: empty <%s>: %w", name, ErrMalformed)
	}
	return s, nil
}

// optionalText returns a leaf element's text, or "" when it is absent or is
// not a single leaf.
func optionalText(fields map[string]any, name string) string {
	s, _ := fields[name].(string)
	return s
}
