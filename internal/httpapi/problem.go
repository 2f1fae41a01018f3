package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ContentTypeProblem is the media type of a problem (RFC 9457 section 3).
const ContentTypeProblem = "application/problem+json"

// TypeBase is the start of the type URI of kefu's own kinds of problem; the
// slug after it names a section of docs/http-api.md.
const TypeBase = "https://github.com/kefu-io/kefu/blob/main/docs/http-api.md#"

// Kind is the slug of a kefu-specific problem type. The zero Kind is
// "about:blank": the HTTP status says everything.
type Kind string

// The kinds of problem kefu's APIs answer with; each has a section in
// docs/http-api.md whose anchor is the slug.
const (
	// InvalidParameter: a query parameter or body field is missing or
	// bad; param names it.
	InvalidParameter Kind = "invalid-parameter"
	// WeChatRefused: the WeChat API answered an error; errcode and
	// errmsg are WeChat's.
	WeChatRefused Kind = "wechat-refused"
	// NotReady: the answer is not available yet (no first poll, a
	// dependency not connected, draining); Retry-After says when to try
	// again.
	NotReady Kind = "not-ready"
	// RateLimited: the client sent more requests than its rate allows;
	// Retry-After says when the next is accepted.
	RateLimited Kind = "rate-limited"
	// Unauthorized: no valid bearer token or console session.
	Unauthorized Kind = "unauthorized"
)

// titles are the short summaries of the kinds (RFC 9457: the same for
// every occurrence of a type).
var titles = map[Kind]string{
	InvalidParameter: "Invalid parameter",
	WeChatRefused:    "WeChat refused the request",
	NotReady:         "Not ready",
	RateLimited:      "Too many requests",
	Unauthorized:     "Unauthorized",
}

// Kinds lists every Kind, for documentation tests.
func Kinds() []Kind {
	return []Kind{InvalidParameter, WeChatRefused, NotReady, RateLimited, Unauthorized}
}

// URI is the kind's type URI; "about:blank" for the zero Kind.
func (k Kind) URI() string {
	if k == "" {
		return "about:blank"
	}
	return TypeBase + string(k)
}

// Title is the kind's title; for the zero Kind, the status text.
func (k Kind) Title(status int) string {
	if t, ok := titles[k]; ok {
		return t
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "Error"
}

// Problem is the body of every error answer of kefu's JSON APIs.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// Param is the query parameter or body field at fault.
	Param string `json:"param,omitempty"`
	// ErrCode and ErrMsg are WeChat's when WeChat refused.
	ErrCode *int   `json:"errcode,omitempty"`
	ErrMsg  string `json:"errmsg,omitempty"`
	// Error repeats Detail for clients written for kefu 1.x, which read
	// {"error": "..."}. Deprecated: read Detail.
	Error string `json:"error"`
}

// Bounds of what a problem repeats, so that no answer grows with what a
// client or an upstream sent.
const (
	// MaxDetail is the longest detail, in characters.
	MaxDetail = 512
	// MaxQuoted is the longest client value Quote keeps, in characters.
	MaxQuoted = 64
	// maxErrMsg is the longest errmsg kept from WeChat.
	maxErrMsg = 256
)

// Option adds to a problem.
type Option func(*problemAnswer)

type problemAnswer struct {
	p          Problem
	kind       Kind
	retryAfter int
}

// Type sets the problem's kind (its type URI and title).
func Type(k Kind) Option { return func(a *problemAnswer) { a.kind = k } }

// Param names the parameter at fault; with no Type it makes the problem
// an InvalidParameter. The name must be one of the API's own parameter
// names, never a client's string.
func Param(name string) Option {
	return func(a *problemAnswer) {
		a.p.Param = name
		if a.kind == "" {
			a.kind = InvalidParameter
		}
	}
}

// WeChat adds WeChat's errcode and errmsg; with no Type it makes the
// problem a WeChatRefused.
func WeChat(errcode int, errmsg string) Option {
	return func(a *problemAnswer) {
		a.p.ErrCode = &errcode
		a.p.ErrMsg = truncate(strings.ToValidUTF8(errmsg, "\uFFFD"), maxErrMsg)
		if a.kind == "" {
			a.kind = WeChatRefused
		}
	}
}

// RetryAfter sets the Retry-After header to d in whole seconds, rounded
// up, at least 1.
func RetryAfter(d time.Duration) Option {
	return func(a *problemAnswer) { a.retryAfter = RetryAfterSeconds(d) }
}

// RetryAfterSeconds is d in whole seconds, rounded up, at least 1: the
// value of a Retry-After header.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(1, s)
}

// SetRetryAfter sets the Retry-After header of an answer that is not a
// problem (say, a plain-text one whose body a client such as WeChat
// expects as it is).
func SetRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(d)))
}

// NewProblem builds the problem WriteProblem would write, without
// writing it (for a caller that embeds it or passes it on).
func NewProblem(status int, detail string, opts ...Option) Problem {
	a := build(status, detail, opts)
	return a.p
}

func build(status int, detail string, opts []Option) problemAnswer {
	var a problemAnswer
	for _, opt := range opts {
		opt(&a)
	}
	detail = truncate(strings.ToValidUTF8(detail, "\uFFFD"), MaxDetail)
	if detail == "" {
		detail = a.kind.Title(status)
	}
	a.p.Type = a.kind.URI()
	a.p.Title = a.kind.Title(status)
	a.p.Status = status
	a.p.Detail = detail
	a.p.Error = detail
	return a
}

// WriteProblem answers status with a problem whose detail is the human
// message. Set headers that belong to the answer (Allow, WWW-Authenticate)
// before calling it.
func WriteProblem(w http.ResponseWriter, status int, detail string, opts ...Option) {
	a := build(status, detail, opts)
	h := w.Header()
	if a.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	body, err := marshal(a.p)
	if err != nil {
		// A Problem is strings and ints: this does not happen.
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"encode error","error":"encode error"}` + "\n")
		status = http.StatusInternalServerError
	}
	h.Set("Content-Type", ContentTypeProblem)
	setCommon(h)
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteJSON answers status with v as JSON. Times in v are written in UTC
// with whole seconds (see Times); a zero time.Time is written as it is, so
// tag such fields omitzero. The answers of kefu's APIs hold customers'
// data: they are never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := marshal(Times(v))
	if err != nil {
		WriteProblem(w, http.StatusInternalServerError, "encode response")
		return
	}
	WriteJSONBytes(w, status, body)
}

// WriteJSONBytes answers status with body, JSON already encoded (a value
// read from a store).
func WriteJSONBytes(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	setCommon(h)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func setCommon(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// marshal encodes v as one JSON line, without HTML escaping (the answers
// are JSON, never HTML; nosniff keeps a browser from thinking otherwise).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Quote is a client's value fit to go into a detail: at most MaxQuoted
// characters (an ellipsis says it was cut), invalid UTF-8 replaced, in Go
// double quotes so that control characters show as escapes.
func Quote(s string) string {
	return strconv.Quote(truncate(strings.ToValidUTF8(s, "\uFFFD"), MaxQuoted))
}

// truncate cuts s to at most n characters, the last an ellipsis when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, count := 0, 0
	for j := range s {
		if count == n-1 {
			i = j
			break
		}
		count++
	}
	return s[:i] + "…"
}
