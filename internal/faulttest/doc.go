// Package faulttest runs kefu's fault scenario: a three-node NATS
// JetStream cluster on loopback inside this process, kefu's roles (ingest,
// feedback and, when the binary has it, notifier) as separate OS processes
// of a freshly built kefu binary, the fake WeChat of
// internal/wechat/wechattest, and a load generator that sends signed
// kf_create_session / kf_close_session callbacks the way WeChat does —
// a 5 s timeout and up to three retries of the very same request.
//
// During the load it kills a NATS node and restarts it on the same store,
// kills the feedback and notifier processes with SIGKILL and restarts
// them, and restarts ingest with SIGTERM. Afterwards it waits until the
// durable consumers have nothing pending or unacknowledged, then checks
// that every callback answered "success" is in the KEFU_WECHAT stream
// once, in the feedback store as exactly one closed session, and — with a
// notifier — in the fake's custom/send record exactly once per kind.
//
// The scenario lives in a non-test package so that `go run ./bench/soak`
// runs the long version and prints the [Report]; the package's test runs a
// short one and fails on any loss or duplicate.
//
// The notifier is at most once by design: a message whose send was in
// progress when its process died is recorded as kefu.notify.failed with
// errmsg "unknown outcome …" and is not sent again. The report counts
// those apart (LostInCrashWindow); they are not counted as missing.
package faulttest
