// Package events is kefu's public event contract: the Go types of every event
// kefu publishes on NATS JetStream, the subjects and streams they travel on,
// the CloudEvents headers each message carries, and helpers to encode and
// decode them. It depends on the standard library only, so another team can
// import it without pulling in kefu's dependencies.
//
// # Subjects and streams
//
//	subject                               type               stream
//	kefu.wechat.kf.session.created        SessionCreated     KEFU_WECHAT
//	kefu.wechat.kf.session.switched       SessionSwitched    KEFU_WECHAT
//	kefu.wechat.kf.session.closed         SessionClosed      KEFU_WECHAT
//	kefu.wechat.message.<msgtype>         MessageReceived    KEFU_WECHAT
//	kefu.wechat.event.<event>             EventReceived      KEFU_WECHAT
//	kefu.kf.queue.snapshot                QueueSnapshot      KEFU_KF
//	kefu.kf.wait.estimated                WaitEstimated      KEFU_KF
//	kefu.kf.session.abandoned             SessionAbandoned   KEFU_KF
//	kefu.kf.agent.chosen                  AgentChosen        KEFU_KF
//	kefu.wechat.kf.queue.joined           QueueJoined        KEFU_WECHAT
//	kefu.tucao.post.created / .updated    FeedbackPost       KEFU_TUCAO
//	kefu.notify.sent / .failed            Notification       KEFU_NOTIFY
//	kefu.dlq.<role>                       (the failed message, unchanged)  KEFU_DLQ
//
// # Headers
//
// Every message uses the CloudEvents NATS binding in binary mode: the body is
// the event as JSON (snake_case names) and the headers carry ce-specversion
// (1.0), ce-id, ce-type (the subject plus a version, e.g.
// kefu.wechat.kf.session.created.v1), ce-source, ce-time and content-type
// application/json. Nats-Msg-Id is set deterministically so JetStream drops
// duplicates: wx-msg-<MsgId> for a WeChat message,
// wx-evt-<FromUserName>-<CreateTime>-<Event>[-<KfAccount…>] for a WeChat
// event (hashed to wx-evt-sha256-<hex> when longer than MaxIDLength) and
// tucao-<id>-<updated_at unix seconds> for a Tucao post. The last token of a
// WeChat message or event subject is its MsgType or Event when that is a
// plain name (SubjectToken), else "other".
//
// # Compatibility
//
// Within one version (.v1) a field is never renamed, retyped or removed; new
// optional fields may appear, so decoders must ignore unknown fields (the
// helpers here do). An incompatible change gets a new ce-type version and is
// published beside the old one for a deprecation period. Golden files for
// every type and version are in testdata/.
//
// # Reading events
//
// A consumer that knows the subject decodes with [Decode]:
//
//	created, err := events.Decode[events.SessionCreated](msg.Data)
//
// and one that reads a mixed stream uses [DecodeSubject], which picks the type
// from the subject.
package events
