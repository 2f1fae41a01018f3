// Package customers is kefu's one read model of where each customer stands
// with 多客服 — none, waiting (since, place, estimate), served (agent,
// since), closed (when, by whom) or left the queue — and the rules the
// services ask of it: has this customer left ([Store.Left], for the
// estimator), must the notifier stay silent ([Store.SuppressNotice]), is
// this message a leave phrase to hold back from the queue ([LeaveGate],
// for ingest), is an agent serving them ([Store.Served]). The rules live
// here as methods, beside the state they read, so every service gets the
// same answer and the wiring (internal/app) only hands method values over.
//
// Each customer has one record in the kefu_customers KV bucket, keyed by
// openid (openids are [A-Za-z0-9_-]; anything else is refused, and keys
// with a dot are kefu's own). Queue care (services/queuecare) keeps it:
// it folds the WeChat session events, customer messages, queue joins and
// the estimator's polls into it with the State.Apply… transitions. Several
// handlers on several replicas write one record, so the model lives in KV,
// not in memory, and every write is a compare-and-set on the record's
// revision ([Store.Update]): two handlers updating one customer never lose
// a transition. Events arrive out of order (several handlers,
// redeliveries), so each status remembers the time of the fact that set
// it: WeChat events carry CreateTime (whole seconds), ordered within a
// second by their KEFU_WECHAT sequence; polls (snapshot, estimate,
// getsession) are observations that count as one second before their poll
// time and lose ties ([ObservedAt]), so a poll never overrides an event of
// the same second. A stale fact never overrides a newer status. Records
// expire after their last write (queue care's StateRetention, 7 days).
//
// One fact in the record is the notifier's: the latest session event by
// its time ([SessionMark], session.go), which decides whether a wait
// estimate belongs to the customer's current visit. The notifier records
// and reads it here instead of folding session events into a model of
// its own; its own bucket keeps only when it last told a customer their
// wait.
//
// The stored JSON is a contract with the records already in the bucket
// and with GET /api/kf/customers/{openid} (docs/openapi.yaml): fields are
// only added, and testdata holds records of the first format that must
// keep reading.
package customers
