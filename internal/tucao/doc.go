// Package tucao is a client for the 兔小巢 (Tucao) feedback API: it lists a
// product's posts (user feedback) newest first, follows next_page_url
// pagination and supports the from/to day window used for backfills.
//
// Every request is signed afresh — Timestamp is the current unix time as ten
// digits and Signature is md5(Timestamp + secret) — because the service only
// accepts timestamps close to its own clock; a URL signed once and reused
// for later pages would start failing after a few minutes.
//
// The service allows at most 100 posts per page and 100 requests per minute
// per product. The client never sends more than Config.RequestsPerMinute
// requests in any 60-second window (see NewWindowLimiter); a budget shared by
// several clients in one process is a shared Limiter, and a budget shared by
// several replicas needs one poller at a time (a lock held elsewhere).
//
// The service's clock, not the host's, decides whether a timestamp is
// fresh. The client reads it from the Date header of every answer and signs
// with its own clock corrected by the difference (ClockSkew, see skew.go); a
// request refused with 401 whose answer revealed a new skew is signed again
// at once, so a host whose clock is minutes off keeps polling. OnClockSkew
// reports each new correction; past SkewWarning (a minute) it deserves a
// warning, since the host's clock needs fixing.
//
// Failures are classified by type, not by message: server errors (5xx),
// transport errors and timeouts (ErrTransport), malformed bodies
// (ErrMalformedResponse) and rate-limit answers (ErrRateLimited) are retried
// with exponential backoff and jitter; signature errors (401/403) and other
// 4xx answers are permanent *APIError values returned at once. IsRetryable
// tells a caller which kind it holds after the retries are spent.
//
// The secret is only ever used to compute signatures: it appears in no
// error, no URL and no String output. A signature is not handed to anyone
// else either: a redirect is followed only to the request's own scheme and
// host, any other is refused with ErrRedirect (net/http would otherwise copy
// the Signature and Timestamp headers to the new host).
package tucao
