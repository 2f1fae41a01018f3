// Package httpedge is the edge where strangers' requests enter kefu: every
// listener a role opens is built here, and every request passes one of its
// gates before a service sees it.
//
// kefu's callback URL has to face the internet, so anything that parses
// headers, keeps per-client state or decides who may read customer data
// lives in this one package, where it can be reviewed and tested as a whole
// rather than re-implemented, slightly differently, by each service:
//
//   - [NewServer] gives every listener the same timeouts and header limit, so
//     a slow or oversized client cannot hold a connection or memory for ever.
//   - [ClientIP] says who the client is: the TCP peer, or — only when the
//     peer is a trusted reverse proxy — the right-most X-Forwarded-For hop
//     that is not itself a trusted proxy. A header sent by anyone else is
//     ignored, so a stranger cannot pick their own identity.
//   - [Limiter] is a token bucket per client whose memory is bounded: an
//     attacker with many source addresses evicts old entries, never grows
//     the table.
//   - [Tokens.Guard] keeps every /api/ path behind "Authorization: Bearer":
//     the admin token may do anything, the read-only token may only read, and
//     with no token configured the API is not served at all — never open.
package httpedge
