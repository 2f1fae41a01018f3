package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names (CloudEvents NATS binding, binary mode, plus JetStream's
// de-duplication header).
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderContentType = "content-type"
	HeaderMsgID       = "Nats-Msg-Id"

	SpecVersion = "1.0"
	ContentType = "application/json"
)

// ErrUnknownSubject is returned by DecodeSubject for a subject outside the contract.
var ErrUnknownSubject = errors.New("events: unknown subject")

// Encode returns the JSON body of an event.
func Encode(e Event) ([]byte, error) {
	return AppendEncode(nil, e)
}

// AppendEncode appends the JSON body of an event to dst, byte for byte what
// Encode returns, so that a publisher can reuse a buffer. The WeChat events
// (MessageReceived, EventReceived, SessionCreated, SessionSwitched,
// SessionClosed) are written without reflection.
func AppendEncode(dst []byte, e Event) ([]byte, error) {
	if b, ok := appendFast(dst, e); ok {
		return b, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.EventSubject(), err)
	}
	if dst == nil {
		return b, nil
	}
	return append(dst, b...), nil
}

// Decode reads the JSON body of an event of type T. Unknown fields are
// ignored, so a newer publisher's optional fields never break a reader.
func Decode[T any](data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decode %T: %w", v, err)
	}
	return v, nil
}

// DecodeSubject decodes a body by the subject it arrived on.
func DecodeSubject(subject string, data []byte) (Event, error) {
	switch {
	case subject == SubjectSessionCreated:
		return decodeAs[SessionCreated](data)
	case subject == SubjectSessionSwitched:
		return decodeAs[SessionSwitched](data)
	case subject == SubjectSessionClosed:
		return decodeAs[SessionClosed](data)
	case strings.HasPrefix(subject, SubjectMessagePrefix):
		return decodeAs[MessageReceived](data)
	case strings.HasPrefix(subject, SubjectEventPrefix):
		return decodeAs[EventReceived](data)
	case subject == SubjectQueueSnapshot:
		return decodeAs[QueueSnapshot](data)
	case subject == SubjectWaitEstimated:
		return decodeAs[WaitEstimated](data)
	case subject == SubjectSessionAbandoned:
		return decodeAs[SessionAbandoned](data)
	case subject == SubjectAgentChosen:
		return decodeAs[AgentChosen](data)
	case subject == SubjectQueueJoined:
		return decodeAs[QueueJoined](data)
	case subject == SubjectPostCreated, subject == SubjectPostUpdated:
		return decodeAs[FeedbackPost](data)
	case subject == SubjectNotifySent, subject == SubjectNotifyFailed:
		return decodeAs[Notification](data)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
}

func decodeAs[T Event](data []byte) (Event, error) {
	v, err := Decode[T](data)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Headers returns the CloudEvents headers of a message. id becomes both
// ce-id and Nats-Msg-Id, so a retried publish of the same fact is dropped by
// JetStream and a consumer can use ce-id as its idempotency key.
func Headers(subject, id, source string, at time.Time) map[string]string {
	return map[string]string{
		HeaderSpecVersion: SpecVersion,
		HeaderID:          id,
		HeaderType:        TypeOf(subject),
		HeaderSource:      source,
		HeaderTime:        at.UTC().Format(time.RFC3339Nano),
		HeaderContentType: ContentType,
		HeaderMsgID:       id,
	}
}

// SetHeaders sets the headers Headers returns on h (a nats.Header), each
// as a one-element value. The seven values share one backing array, and
// each has its capacity capped at 1 so that a later Add to one header
// cannot overwrite the next.
func SetHeaders(h map[string][]string, subject, id, source string, at time.Time) {
	v := [...]string{SpecVersion, id, TypeOf(subject), source, at.UTC().Format(time.RFC3339Nano), ContentType, id}
	vs := v[:]
	h[HeaderSpecVersion] = vs[0:1:1]
	h[HeaderID] = vs[1:2:2]
	h[HeaderType] = vs[2:3:3]
	h[HeaderSource] = vs[3:4:4]
	h[HeaderTime] = vs[4:5:5]
	h[HeaderContentType] = vs[5:6:6]
	h[HeaderMsgID] = vs[6:7:7]
}

// WeChatMessageID is the de-duplication id of a WeChat message.
func WeChatMessageID(msgID string) string { return "wx-msg-" + msgID }

// MaxIDLength bounds ce-id and Nats-Msg-Id. A WeChat event id longer than
// this (its parts come from the callback, so a stranger with a valid
// signature could make it as long as the body) is replaced by
// wx-evt-sha256-<64 hex digits of the SHA-256 of the full id>: still
// deterministic, so WeChat's retries of it remain duplicates.
const MaxIDLength = 256

// WeChatEventID is the de-duplication id of a WeChat event:
// wx-evt-<FromUserName>-<CreateTime>-<Event>[-<KfAccount…>], or its hashed
// form when that is longer than [MaxIDLength]. The agent accounts are part
// of it because two 多客服 events of one customer can share a second (a
// session closed and the next one created).
func WeChatEventID(fromUser string, createTime int64, event string, kfAccounts ...string) string {
	var b strings.Builder
	b.WriteString("wx-evt-")
	b.WriteString(fromUser)
	b.WriteByte('-')
	b.WriteString(strconv.FormatInt(createTime, 10))
	b.WriteByte('-')
	b.WriteString(event)
	for _, a := range kfAccounts {
		if a != "" {
			b.WriteByte('-')
			b.WriteString(a)
		}
	}
	if b.Len() > MaxIDLength {
		sum := sha256.Sum256([]byte(b.String()))
		return "wx-evt-sha256-" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// TucaoPostID is the de-duplication id of one version of a Tucao post.
func TucaoPostID(postID string, updatedAt time.Time) string {
	return "tucao-" + postID + "-" + strconv.FormatInt(updatedAt.Unix(), 10)
}
