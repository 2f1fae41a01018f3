// Package queuecare keeps the 多客服 queue tidy: it lets a waiting customer
// leave the queue by saying so, closes sessions nobody is using any more,
// and keeps a read model of every customer's state that the notifier,
// ingest and operators ask.
//
// # Customer read model
//
// Queue care keeps the customer read model of internal/customers (the
// kefu_customers bucket, one record per openid) up to date from two durable
// consumers, shared by every replica: queuecare-wechat (KEFU_WECHAT,
// kefu.wechat.>: customer messages, the kf_create/switch/close_session
// events and ingest's queue joins, kefu.wechat.kf.queue.joined, which make
// a customer who is neither waiting nor served wait from the time of the
// transferred message) and queuecare-kf (KEFU_KF: QueueSnapshot,
// WaitEstimated, SessionAbandoned). How the record orders facts that
// arrive out of order, and the questions the other services ask of it,
// are in that package. Records expire Config.StateRetention (7 days)
// after their last write. GET /api/kf/customers/{openid} serves a record
// (404 unknown, 400 malformed openid).
//
// # Leaving the queue
//
// A text (or recognised voice) message that is one of Config.LeavePhrases
// — "不等了", "取消排队", "退出排队" by default, compared without space,
// punctuation, emoji, width or case (customers.LeaveDetector) — from a customer who
// waits takes them out. WeChat's kfsession/close cannot do it: the official
// documentation describes it as closing an established session
// ("关闭已建立的客服会话"), its kf_account is required and must be the
// serving agent, and it answers 65413 ("不存在对应用户的会话信息") for a
// customer no agent has accepted and 65414 for one another agent serves.
// A waiting case has no agent, so nothing can close it; the fake
// (internal/wechat/wechattest) answers 65413 for a waiting customer
// accordingly. Creating a session (kfsession/create) just to close it
// would take the case out at once, but it needs an online agent, pops the
// customer up in that agent's client and sends session events the notifier
// would announce, so kefu does not. Instead, kefu
//
//  1. decides whether the customer waits. getwaitcase is the documented
//     list of waiting customers, and ingest sees every customer join
//     (kefu.wechat.kf.queue.joined): that evidence, kept in the read
//     model, counts. getsession is asked too: an agent in its answer
//     means served (nothing to leave), a queue time confirms the wait;
//     but the documentation describes it for established sessions only,
//     and where WeChat answers createtime 0 for a queued customer that
//     answer alone never makes them "not waiting" — neither here nor in
//     reconciliation, which leaves a waiting customer waiting on it (the
//     estimator reports one who vanished from getwaitcase);
//  2. records them as left, so the notifier sends no more wait messages;
//  3. publishes kefu.kf.session.abandoned (SessionAbandoned, reason
//     "left", waited_seconds from entering the queue) with ce-id
//     kf-left-<openid>-<queued unix>, which the estimator counts as an
//     abandonment;
//  4. confirms with Config.LeaveConfirmation through custom/send, once: a
//     record queuecare.left.<openid>.<queued unix> in kefu_notified is
//     created before the send, and the outcome is published as
//     kefu.notify.sent/failed (kind left_queue), as the notifier does;
//  5. the deferred close: when an agent later accepts the stale case
//     (kf_create_session, or a snapshot or getsession showing the session),
//     kefu closes it at once with kfsession/close(agent, openid,
//     "客户已取消排队"), which frees the agent's slot. Only the first
//     session within Config.DeferredCloseWithin (24 h) is closed so; a
//     later one is a new conversation.
//
// A customer who writes anything else after leaving wants service after
// all: they become waiting again (still in WeChat's queue, or queued anew
// by ingest's transfer) and nothing is closed. Ingest answers a leave
// phrase from a customer who is not served "success" instead of a transfer
// (customers.LeaveGate), so the phrase never queues
// anyone, while a served customer's words still reach their agent.
//
// A leave phrase from a customer who does not wait does nothing: no close,
// no event, no message. A served customer's "不等了" goes to their agent
// like any message (the agent closes if asked); one who is in no queue has
// nothing to leave, and an answer would only puzzle them. A leave phrase
// handled more than Config.LeaveMaxAge after it was sent (after an outage)
// still takes the customer out but is not confirmed.
//
// # Stale sessions
//
// One replica at a time (the lease queuecare-<appid> in kefu_locks) sweeps
// every Config.SweepInterval: a served session with no customer message
// and no session event (created, switched) for Config.StaleAfter (30
// minutes) is closed with kfsession/close (Config.AgentStaleNote for the
// agent), and the customer gets Config.StaleMessage plus the feedback link
// from Deps.FeedbackLink, once (queuecare.stale.<openid>.<since unix> in
// kefu_notified; kind stale_closed). The session is marked Closing by
// compare-and-set before the call, re-checking that it is the same session
// and still idle, so activity recorded meanwhile keeps it open and a
// second sweep never closes it again. What an agent types is not pushed to
// kefu by WeChat: when Deps.API implements MessageRecords, the sweep reads
// the message record (getmsglist) of the last StaleAfter once, only when
// there are sessions about to be closed, within 10 pages a minute, and
// leaves open (ActionAgentActive) every session in which the agent sent or
// received a message since — its idle stretch restarting there. A record
// it cannot read closes nothing that sweep (ActionRetry); see activity.go.
// With Config.StaleDryRun nothing is closed: the sweep logs, counts
// (kefu_queuecare_stale_sessions) and stores its findings, served at
// GET /api/kf/stale by every replica.
//
// # Reconciliation
//
// Events get lost (WeChat gives up after three tries). The lease holder
// checks customers active within Config.ReconcileWindow (1 h) against
// getsession, oldest check first, each at most every Config.ReconcileEvery
// (5 min), within Config.ReconcileCallsPerMinute (60) across all replicas.
// At 1,000 active customers the demand is 1000 / 5 min = 200 calls a
// minute, so the default budget caps it at 60 calls a minute (86,400 a
// day at most) and every customer is re-checked about every 17 minutes;
// below 300 active customers the cost is active/5 calls a minute.
package queuecare
