// Package bus is kefu's connection to NATS JetStream: it connects to an
// external cluster or starts an embedded server, creates the streams and KV
// buckets of the contract idempotently, publishes events with CloudEvents
// headers and a de-duplication id (waiting for JetStream's ack), and
// consumes through durable consumers it creates itself — never ones a
// library would delete on close — with manual ack, bounded in-flight
// messages, delayed redelivery and a dead-letter subject.
//
// The bus is sealed: it exports no NATS connection and no JetStream
// context. Every stream comes from pkg/events and every KV bucket is
// declared in buckets.go; the few other operations the roles and tools
// need are methods (ops.go). So the de-duplication ids, the dead-letter
// rules and the redial of a connection the server closed for good
// (health.go, live.go) cannot be bypassed, and a handle bound to a dead
// connection cannot be kept.
//
// Where things are: bus.go opens and closes; embedded.go runs the embedded
// server and checks credentials; health.go follows the connection (ready,
// unusable since, redial); streams.go and buckets.go create the contract's
// streams and buckets; publish.go publishes; consumer.go describes a
// consumer and its dead letters; ensure.go creates a durable consumer (and
// replaces an earlier build's push consumer); subscribe.go runs one,
// deliver.go handles its messages and pause.go pauses it while its
// dependency is down; lease.go elects one holder of a job; leaf.go and
// leafremote.go are the store-and-forward spool of ingest.
//
// # Consumers: pull, on the bus's connection
//
// A consumer is a durable pull consumer that Subscribe creates with the
// jetstream API and consumes with Concurrency calls of Consume on the
// bus's own connection, so a process holds one NATS connection whatever
// its roles. kefu used watermill-nats at first, then push subscriptions of
// its own, each consumer on a connection of its own. watermill was
// dropped because its subscriber cannot stop taking messages while a
// dependency is down without closing (so a store outage could only be
// ridden out by redelivering until MaxDeliver, then dead-lettering), and
// because the Router and middleware it brings were not used: the retry,
// back-off, pause and dead-letter rules live here, in one place.
//
// Push was then measured against pull (consume_bench_test.go: embedded
// server, 1 KB payloads, a handler doing nothing, Concurrency 4,
// MaxAckPending 16, 20 000 stored messages consumed and acknowledged; push
// Subscribe built at the commit before the move, pull Subscribe after, run
// in turn). `kefu all` (as `kefu demo` runs it) held 9 NATS connections —
// the bus's and one per consumer — and holds 1.
//
// On the 2-core machine at rest (load 1.1–1.9), with pull requests sized
// to MaxAckPending, fifteen pairs: push 46 400–68 900 msgs/s (median
// 58 600), pull 35 800–63 600 (median 48 300), the ratio pull/push of each
// pair 0.55–1.35, median 0.84. The plainest use of Consume, without
// kefu's bookkeeping (BenchmarkConsumeThroughputPull), did the same as
// pull Subscribe in the same binary (medians 52 000 and 51 500 msgs/s):
// the cost was pull's requests, not kefu's code. Each pull now asks for
// pullBatch (8) × MaxAckPending — the server still has no more than
// MaxAckPending unacknowledged — so it sends a request every few dozen
// messages instead of every few; ten pairs: push 48 500–67 300 msgs/s
// (median 60 500), pull 34 600–64 300 (median 56 600), ratio 0.55–1.23,
// median 0.94, and the process's CPU time for a run the same as push.
// Latency from publish to handler, one message at a time: p50 71 µs push,
// 65 µs pull; p99 291 µs and 285 µs. With other work on the machine (load
// 8–13) the spread between runs hid any difference (seven pairs, ratio
// 0.48–1.35, median 1.11).
//
// The notifier's benchmark, whose handlers do real work (a WeChat call,
// KV compare-and-sets, an outcome event), against the commit before this
// round, twelve pairs at rest: CPU per notification 0.97 of before,
// notifications a second 1.03. Pull is kept for what it gives: one
// connection per process instead of one per consumer, and pause, redial
// and a consumer deleted on the server handled on the connection the bus
// already follows. A first version that handed each message to a handler
// goroutine and pulled MaxAckPending/Concurrency at a time was a third
// slower than push.
//
// To measure again: `go test -run '^$' -bench 'Consume' -benchtime 20000x
// ./internal/bus/`; the push numbers need the commit before the move
// (BenchmarkConsumeThroughputPush).
//
// What the push subscriptions did, the pulls keep: a paused consumer
// drains its Consumes (what they hold is handed back) and the server keeps
// what is published meanwhile; after a redial of the bus's connection
// (OnRedial) the consumer consumes again there; Close lets the handlers of
// the messages already received finish and ack. A consumer deleted on the
// server is created again, and one that cannot consume makes the bus not
// ready, naming it.
package bus
