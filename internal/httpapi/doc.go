// Package httpapi writes the answers of kefu's JSON HTTP APIs in one
// shape, so that a client handles every API the same way (docs/http-api.md):
//
//   - errors are RFC 9457 problem details (application/problem+json) with
//     type, title, status and detail, and optionally param (the offending
//     parameter) and errcode/errmsg (WeChat's, when WeChat refused); the
//     member error repeats detail for clients of kefu 1.x and is
//     deprecated;
//   - every time is RFC 3339 in UTC with whole seconds, and a zero time is
//     left out rather than printed as the year 1;
//   - an answer that means "not yet, try again" carries Retry-After in
//     seconds.
//
// There is no instance member: request paths carry customers' openids,
// which are personal data. A detail is built from constants and validated
// values; a value a client sent goes in only through Quote, bounded.
package httpapi
