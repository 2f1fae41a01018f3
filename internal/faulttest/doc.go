// Package faulttest runs kefu's "nothing lost" fault scenarios the way an
// operator meets them: kefu's roles as separate OS processes of a freshly
// built kefu binary, a three-node NATS JetStream cluster on loopback
// inside this process, PostgreSQL (when a DSN is given), and the fakes of
// WeChat (internal/wechat/wechattest) and Tucao (internal/tucao/tucaotest).
//
// [RunSuite] runs the scenarios one after the other on one binary and one
// cluster and sums each up in a [Row] — sent / stored / lost / doubled and
// a short detail — printed as one table by [SuiteReport.WriteTable]:
//
//   - faults ([Run]): signed kf_create_session / kf_close_session
//     callbacks, sent the way WeChat does (5 s timeout, up to three
//     retries of the very same request); meanwhile a NATS node is shut
//     down and restarted, feedback and notifier are killed with SIGKILL,
//     ingest is restarted with SIGTERM. Every callback answered "success"
//     must be in KEFU_WECHAT once, in the feedback store as exactly one
//     closed session, and in the fake's custom/send record once per kind.
//   - store-outage: a TCP proxy between feedback and PostgreSQL is cut
//     (every connection closed, new ones refused) and restored while posts
//     (through ingest's Tucao poller) and session callbacks flow: every
//     post and session fact is stored, nothing is dead-lettered.
//   - tucao-downtime: ingest is stopped while Tucao gets a backlog of
//     posts; started again, it brings them all to the store within Tucao's
//     100 requests a minute.
//   - backfill: `kefu ingest --tucao-backfill --from D --to D` publishes
//     the day's posts once and no other day's.
//   - notifier-not-sent: the fake fails the notifier's sends with every
//     failure it can play after which WeChat certainly did not carry the
//     message out (HTTP 429, errcode -1, 45011, a token fetch that times
//     out); every message still reaches the customer exactly once.
//   - token-40001: another system forces a new access token while
//     messages flow; every message reaches the customer exactly once.
//   - paused-leader: of two estimator processes, the lease holder is
//     stopped with SIGSTOP mid-poll past its lease, the other takes over,
//     the first resumes with SIGCONT; no write of the stale holder lands
//     after its successor's (watched live on kefu_state).
//   - nats-stopped: NATS (a server of the scenario's own with the leaf
//     port ingest's store and forward dials) is stopped under callbacks to
//     an ingest with KEFU_INGEST_STORE_FORWARD; every callback answered
//     "success" is stored exactly once after it is back.
//
// The scenarios live in a non-test package so that `go run ./bench/soak`
// runs them at full length (FullSuite); the package's test runs the short
// version ([ShortSuite]) and fails on any loss or duplicate.
//
// The notifier is at most once by design: a message whose send was in
// progress when its process died is recorded as kefu.notify.failed with
// errmsg "unknown outcome …" and is not sent again. The fault run's report
// counts those apart (LostInCrashWindow); they are not counted as missing.
package faulttest
