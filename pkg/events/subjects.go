package events

import "strings"

// Streams, each created by the role that publishes to it.
const (
	StreamWeChat = "KEFU_WECHAT" // kefu.wechat.>
	StreamKF     = "KEFU_KF"     // kefu.kf.>
	StreamTucao  = "KEFU_TUCAO"  // kefu.tucao.>
	StreamNotify = "KEFU_NOTIFY" // kefu.notify.>
	StreamDLQ    = "KEFU_DLQ"    // kefu.dlq.>
)

// Subjects of the events.
const (
	SubjectSessionCreated  = "kefu.wechat.kf.session.created"
	SubjectSessionSwitched = "kefu.wechat.kf.session.switched"
	SubjectSessionClosed   = "kefu.wechat.kf.session.closed"
	SubjectSessionAll      = "kefu.wechat.kf.session.>"
	// SubjectKfAll is every 多客服 fact from WeChat callbacks: the
	// session events and QueueJoined, in one stream and order.
	SubjectKfAll            = "kefu.wechat.kf.>"
	SubjectMessagePrefix    = "kefu.wechat.message."
	SubjectEventPrefix      = "kefu.wechat.event."
	SubjectQueueSnapshot    = "kefu.kf.queue.snapshot"
	SubjectWaitEstimated    = "kefu.kf.wait.estimated"
	SubjectSessionAbandoned = "kefu.kf.session.abandoned"
	SubjectAgentChosen      = "kefu.kf.agent.chosen"
	SubjectQueueJoined      = "kefu.wechat.kf.queue.joined"
	SubjectPostCreated      = "kefu.tucao.post.created"
	SubjectPostUpdated      = "kefu.tucao.post.updated"
	SubjectNotifySent       = "kefu.notify.sent"
	SubjectNotifyFailed     = "kefu.notify.failed"
	SubjectDLQPrefix        = "kefu.dlq."
)

// StreamSubjects maps every stream to the subjects it captures.
var StreamSubjects = map[string][]string{
	StreamWeChat: {"kefu.wechat.>"},
	StreamKF:     {"kefu.kf.>"},
	StreamTucao:  {"kefu.tucao.>"},
	StreamNotify: {"kefu.notify.>"},
	StreamDLQ:    {"kefu.dlq.>"},
}

// MessageSubject is the subject of a WeChat message of the given MsgType
// (see [SubjectToken]).
func MessageSubject(msgType string) string { return SubjectMessagePrefix + SubjectToken(msgType) }

// EventSubject is the subject of a WeChat event (see [SubjectToken]).
func EventSubject(event string) string { return SubjectEventPrefix + SubjectToken(event) }

// TokenOther is the subject token of every MsgType or Event that is not a
// plain name: the original value stays in the event's msg_type or event
// field and in raw.
const TokenOther = "other"

// MaxSubjectToken is the longest MsgType or Event kept as a subject token.
// WeChat's names are far shorter; the bound keeps a hostile callback from
// building a subject the NATS server refuses (its control line is 4 KiB).
const MaxSubjectToken = 64

// SubjectToken is the last subject token of a WeChat message or event: the
// lower-cased MsgType or Event when it matches ^[a-z0-9_]{1,64}$, else
// [TokenOther]. Unlike [Token] it never builds a new token from a name it
// does not accept, so a stranger can create at most one subject of their
// own, and it is bounded in length.
func SubjectToken(name string) string {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > MaxSubjectToken {
		return TokenOther
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		case c >= 'A' && c <= 'Z':
		default:
			return TokenOther
		}
	}
	return strings.ToLower(name)
}

// DLQSubject is the dead-letter subject of a role.
func DLQSubject(role string) string { return SubjectDLQPrefix + Token(role) }

// Token turns a free-form name (a WeChat MsgType or Event) into one safe,
// lower-case subject token: characters that NATS treats specially (dots,
// wildcards, white space) become underscores, and an empty name becomes
// "unknown", so a hostile callback can never publish outside its subject tree.
func Token(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "unknown"
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// TypeOf is the ce-type of a subject at version 1.
func TypeOf(subject string) string { return subject + ".v1" }

// ContractVersion is the version of the event contract this package
// describes: info.version of docs/asyncapi.json. The module is tagged
// pkg/events/v<ContractVersion>.
const ContractVersion = "1.0.0"
