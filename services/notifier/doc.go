// Package notifier tells customers what is happening with their 多客服
// session through customer-service text messages
// (cgi-bin/message/custom/send):
//
//	kefu.wechat.kf.session.created   "客服 {nickname} 正在为您服务"
//	kefu.wechat.kf.session.switched  "已为您转接至客服 {nickname}"
//	kefu.wechat.kf.session.closed    a thank-you with the Tucao feedback link
//	kefu.kf.wait.estimated           "您前面还有 {ahead} 位，预计等待约 {minutes} 分钟"
//	                                 ("您是下一位，…" first in line, with the default text)
//
// It reads two durable consumers shared by every notifier process
// (notifier-sessions on KEFU_WECHAT, notifier-wait on KEFU_KF), so
// processes split the work, and publishes the outcome of every message as
// kefu.notify.sent or kefu.notify.failed (events.Notification) on
// KEFU_NOTIFY with ce-id "notify-" + the cause's ce-id, so the outcome is
// itself published once. Undecodable events go to kefu.dlq.notifier.
//
// # Exactly-once effect
//
// The cause event's ce-id is the idempotency key; the protocol is package
// sendonce's ledger, which queue care sends through too. For each message:
//
//  1. claim: create cause.<hash> in the kefu_notified bucket with state
//     "sending", the process name and the time (kv.Create: compare-and-set,
//     only one process wins);
//  2. send (after the rate limiter);
//  3. publish the outcome event (its Nats-Msg-Id is deterministic);
//  4. update the record to "sent" or "failed" (compare-and-set on the
//     claim's revision); then ack.
//
// A delivery that finds a final record acks without sending (redelivery,
// replay, a duplicate outside JetStream's de-duplication window). One that
// finds a "sending" marker younger than SendTimeout + RecordTimeout (+5 s
// for clock skew) returns a transient error: its owner may be alive, and
// the redelivery comes back later. When nothing was sent — the verdict of
// wechat.Classify, which queuecare uses too: no access token (token
// endpoint or kefu_token bucket unreachable), the rate limiter ran out of
// time, the connection or TLS handshake failed, the context ended before
// the request was written, or WeChat answered -1, 45009/45011, a token
// error or HTTP 429 — the marker is deleted and the event redelivered with
// capped backoff for as long as it takes (MaxDeliver does not end it);
// -1 and token errors are first retried inside the WeChat client.
// 45015, 45047, 65400–65414 and other permanent codes are not retried:
// kefu.notify.failed at once. A customer state that cannot be read
// (Deps.Suppress) is retried the same way rather than announced.
//
// Crash between send and record: a marker older than that limit was left
// by a process that died after claiming — before the send, during it or
// after it. WeChat has no idempotency key, so whether the customer got the
// message cannot be known. The notifier chooses at most once: it does not
// send again and records the cause as failed with errmsg "unknown outcome
// (crash during send)". Before that it publishes the failure with the
// cause's outcome id; if JetStream reports a duplicate, the dead process
// had published the real outcome, which is read back and recorded instead.
// A send whose answer is lost after the request was written (timeout,
// connection reset, gateway 5xx, malformed answer) is treated the same way,
// with errmsg "unknown outcome: <reason>: …", the reason one of
// wechat.UnknownReasons, also counted by
// kefu_wechat_api_unknown_outcome_total{method,reason}.
//
// Why at most once: a duplicate is visible to the customer and counts
// against WeChat's per-customer limit (45047: a handful of messages until
// the customer writes again), a limit the agent needs for the actual
// conversation; a repeated "you are next in line" or "agent X is serving
// you" after the fact is worse than a missing one. The window is narrow —
// a process crash or a lost answer during one HTTP call — and every such
// case is visible as a kefu.notify.failed event and in the metrics.
//
// Stop lets sends in progress finish, record their outcome and be
// acknowledged before the subscriptions close; events delivered meanwhile
// are handed back (a delayed redelivery, Backoff[0]) and go to another
// process or to this one after a restart, which sends each exactly once.
//
// # Wait messages
//
// Where the customer's session stands (open after created or switched,
// closed after closed, ordered by event time, not by handling order) is
// recorded in the customer read model (internal/customers, SessionMark);
// the record customer.<hash(openid)> in kefu_notified holds only the last
// wait message sent. A wait message is sent on entering the queue, then only when the
// estimate changed by at least Wait.MinChange and Wait.MinChangeRatio, never
// within Wait.MinInterval of the previous one, never while a session is open
// and never for an estimate made before the last session ended. The
// decision is taken again under compare-and-set on that wait record,
// which is updated before the send, so two processes handling two estimates
// for one customer cannot both send.
//
// # Feedback link
//
// With KEFU_PUBLIC_URL and KEFU_TUCAO_PRODUCT_ID the closed-session message
// links to {KEFU_PUBLIC_URL}/feedback/{token}; the token carries the
// customer's pseudonym (package feedbacklink: a keyed HMAC of the openid,
// never the openid itself) and an expiry (KEFU_FEEDBACK_LINK_TTL, default
// 7 days), signed with HMAC-SHA256 under KEFU_FEEDBACK_LINK_SECRET, or when
// unset a key derived from KEFU_WECHAT_SECRET. The page (Routes) answers
// with a form that posts openid=<pseudonym>, nickname and avatar to
// https://support.qq.com/product/{id}, which logs the customer in to Tucao
// under the pseudonym: someone who knows a customer's openid cannot post in
// their name, and the feedback service, which computes the same pseudonym,
// links the post to the session. Links issued before pseudonyms (openid in
// the token) keep working until they expire and post the pseudonym too. A
// tampered token gets 400, an expired one 410. Without KEFU_PUBLIC_URL the
// message links to the Tucao page itself, where the customer posts
// anonymously; without a product id it carries no link. The token never
// appears in events or logs.
package notifier
