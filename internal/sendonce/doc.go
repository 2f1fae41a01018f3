// Package sendonce sends kefu's own messages to customers at most once
// each, however often the event that calls for one is delivered and
// however many processes handle it.
//
// WeChat's message/custom/send has no idempotency key: a message sent
// twice reaches the customer twice, reads worse than a missing one and
// costs the customer's reply budget (45047). So every message has a key in
// the kefu_notified bucket and goes through one protocol, the same for the
// notifier and queue care:
//
//  1. claim: create the key with state "sending", the process and the time
//     (compare-and-set: one process wins);
//  2. send;
//  3. publish the outcome event, kefu.notify.sent or kefu.notify.failed,
//     with ce-id OutcomeID(cause), so it is itself published once;
//  4. turn the claim into the final record (compare-and-set on the
//     claim's revision).
//
// What a failed send means is wechat.Classify's one decision: certainly
// not sent (no token, no connection, -1, 45009/45011, a token error, HTTP
// 429) gives the claim back and asks the caller to try again; an unknown
// outcome (the request was written, the answer lost) is recorded as failed
// with errmsg "unknown outcome: <reason>: …" and never sent again; a
// refusal is recorded as failed with WeChat's errcode and errmsg.
//
// A claim older than Config.StaleAfter was left by a process that died
// between claim and record: it is recorded as failed with errmsg CrashedErrMsg,
// or with the outcome the dead process had published, which JetStream's
// de-duplication reveals. A younger claim is a retry for later.
//
// The records' JSON (Record) is read and written by every kefu version;
// services/notifier/doc.go and docs/operations.md ("Notifications and
// access tokens") describe what operators see of it.
package sendonce
