// Package deploy holds kefu's deployment files — the container image
// (Dockerfile), a Docker Compose stack on a three-node NATS JetStream
// cluster (compose.yaml, example.env, nats/), Kubernetes manifests (k8s/)
// and a Grafana dashboard (grafana/) — and the tests that keep them true to
// the binary, since no Docker engine runs in CI to try them.
//
// The tests parse every file and check it against the code: each KEFU_*
// variable is one kefu reads (internal/config, services/notifier) and its
// value parses; each role is a role of the binary; each NATS node runs
// JetStream and routes to the others (parsed with nats-server's own config
// loader); each metric on the dashboard is one kefu exports; and the
// Dockerfile's `go build` lines, run with exactly their flags, produce a
// static binary that reports the stamped version and passes the image's
// health check. The build runs unless -short is given.
//
// Nothing here is imported by kefu; the package has no API.
package deploy
