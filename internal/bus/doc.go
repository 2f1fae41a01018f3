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
// consumer and its dead letters; subscribe.go runs one and pause.go pauses
// it while its dependency is down; lease.go elects one holder of a job;
// leaf.go and leafremote.go are the store-and-forward spool of ingest.
//
// # Consumers: push subscriptions of kefu's own
//
// A consumer is a nats.go queue subscription to the deliver subject of a
// push consumer that Subscribe creates with the jetstream API, each on a
// connection of its own. kefu used watermill-nats for this at first; it was
// dropped because its subscriber cannot stop taking messages while a
// dependency is down without closing (so a store outage could only be
// ridden out by redelivering until MaxDeliver, then dead-lettering), and
// because the Router and middleware it brings were not used: the retry,
// back-off, pause and dead-letter rules live in subscribe.go and pause.go,
// one place.
//
// The jetstream API's pull Consume was measured against these push
// subscriptions (consume_bench_test.go: embedded server, 1 KB payloads, a
// handler doing nothing, Concurrency 4, MaxAckPending 16; a 2-core machine
// shared with other work, so runs vary by a factor of three). Throughput
// of 20 000 stored messages consumed and acknowledged, nine runs each:
// push 13 700–47 000 msgs/s (median 17 100), pull 7 200–52 300 msgs/s
// (median 27 800). Latency from publish to handler, one message at a
// time, four runs: p50 70–87 µs for both, p99 1.2–5.8 ms push and
// 1.4–3.7 ms pull. `kefu all` holds 9 NATS connections: the bus's own and
// one per consumer (8); pull consumers on the bus's connection would hold 1.
//
// So pull is not slower and saves connections, and is where consumers are
// to move. They have not moved yet: a pull consumer must keep what the push
// subscriptions do today — stop taking messages while paused (stop the
// Consume, hand back what it buffered), come back after a redial of the
// bus's connection (OnRedial), let Close finish the handlers of buffered
// messages — and until it is shown to by the bus, fault and consumer
// tests, the push path stays.
package bus
