// Package replay implements `kefu replay` and `kefu events tail`: reading
// kefu's JetStream streams from the outside, for other teams and for
// operators, without ever touching the durable consumers the services
// depend on.
//
// # kefu replay
//
//	kefu replay --stream KEFU_WECHAT [--subject 'kefu.wechat.kf.>']...
//	    [--since 2h | --since 2026-11-25T10:00:00Z | --from-seq N]
//	    [--republish PREFIX] [--follow] [--limit N]
//
// Replay reads a stream through an ephemeral ordered consumer (in memory,
// acks none, removed when the command ends and, should the process die,
// by the server after five minutes of inactivity). Durable consumers are
// never created, bound to or acknowledged, so the services' delivery and
// ack state is exactly what it was. Without --follow it stops at the last
// message the stream held when the command started; with --follow it keeps
// reading new messages until interrupted (which ends it successfully).
//
// Every event is printed as one JSON line:
//
//	{"stream":"KEFU_WECHAT","seq":42,"subject":"kefu.wechat.kf.session.created",
//	 "time":"2026-11-25T10:00:00.123456789Z","headers":{"Nats-Msg-Id":"wx-evt-…",…},
//	 "data":{…}}
//
// time is when JetStream stored the message (UTC, RFC 3339 with
// nanoseconds); headers are sorted by name, a header with one value is a
// string and a repeated header an array of strings; data is the body as it
// is (compacted onto one line if it spans several) when it is valid JSON in
// valid UTF-8, otherwise the body is given as "data_base64" (standard
// encoding) instead. Lines are built by hand, not by encoding/json, so
// that a file of a few hundred thousand events takes seconds.
//
// # Republishing
//
// --republish PREFIX publishes every event again on PREFIX + "." + its
// subject (kefu.wechat.kf.session.created → PREFIX.kefu.wechat.kf.session.created):
// prefixing rather than rewriting keeps the whole original subject, so a
// team filters replayed events exactly as live ones, under PREFIX.
// Headers are kept, except the Nats-* ones: they are JetStream's
// directives for the original publish (Nats-Expected-*, Nats-Rollup,
// Nats-TTL, …) and would fail the copy, purge the target or expire it. Nats-Msg-Id becomes replay-<stream>-<seq> and the
// original id moves to Kefu-Replay-Of: the original id would be dropped as
// a duplicate, whereas the new one is stable, so replaying the same range
// twice within the target stream's duplicate window stores it once — a
// replay interrupted and run again does not double anything. After the
// window has passed, a second run gives a second copy.
//
// When a stream captures PREFIX.> the events are published to JetStream
// and every publish is acknowledged before the command succeeds; when none
// does they are published on core NATS, reaching only live subscribers (a
// note says so on stderr). A PREFIX that the source stream itself
// captures would replay the replay forever and is refused.
//
// # kefu events tail
//
//	kefu events tail [--subject 'kefu.>']... [--stream S] [--json]
//
// Tail shows new events as they happen, one human line each: time,
// subject and a short summary of the decoded event. --json prints the
// replay JSON lines instead. Without --stream it is a plain core NATS
// subscription: it sees every message published on the subjects, whether
// or not a stream stores it, but has no stream sequence, and the time is
// when tail received it ("stream" and "seq" are left out of the JSON).
// With --stream it reads that stream through an ordered consumer that
// delivers only new messages, so it shows what JetStream actually stored,
// with the stored time and sequence.
package replay
