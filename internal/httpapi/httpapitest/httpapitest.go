// Package httpapitest holds the checks every kefu JSON API's tests make of
// its answers: that an error is a valid problem (package httpapi) with the
// headers its status needs, and that no time is the zero time.
package httpapitest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/httpapi"
)

// Problem is a decoded problem, with every member kefu writes.
type Problem struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Status  int    `json:"status"`
	Detail  string `json:"detail"`
	Param   string `json:"param"`
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
	Error   string `json:"error"`
}

// CheckProblem fails t unless the answer (status, header, body) is a valid
// kefu problem with that HTTP status: content type, nosniff, no-store,
// status member equal to the status, a title, a non-empty detail equal to
// error, a type that is about:blank or one of httpapi's kinds, no instance;
// a 405 with Allow, a 429 or a 503 with a numeric Retry-After. It returns
// the problem for further checks.
func CheckProblem(t testing.TB, status int, header http.Header, body []byte) Problem {
	t.Helper()
	if ct := header.Get("Content-Type"); ct != httpapi.ContentTypeProblem {
		t.Fatalf("%d answer: Content-Type %q, want %q; body %s", status, ct, httpapi.ContentTypeProblem, body)
	}
	if header.Get("X-Content-Type-Options") != "nosniff" || header.Get("Cache-Control") != "no-store" {
		t.Errorf("%d answer: X-Content-Type-Options %q, Cache-Control %q", status,
			header.Get("X-Content-Type-Options"), header.Get("Cache-Control"))
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatalf("%d answer is not a JSON object: %v: %s", status, err, body)
	}
	if _, ok := members["instance"]; ok {
		t.Errorf("problem has an instance member: %s", body)
	}
	var p Problem
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem with a member kefu does not write: %v: %s", err, body)
	}
	if p.Status != status {
		t.Errorf("status member %d, HTTP status %d", p.Status, status)
	}
	if p.Title == "" || p.Detail == "" || p.Error != p.Detail {
		t.Errorf("title %q, detail %q, error %q: want a title, a detail, error equal to detail", p.Title, p.Detail, p.Error)
	}
	if !knownType(p.Type) {
		t.Errorf("type %q is neither about:blank nor a documented kind", p.Type)
	}
	if p.Type == "about:blank" && p.Title != http.StatusText(status) {
		t.Errorf("about:blank problem titled %q, want the status text %q", p.Title, http.StatusText(status))
	}
	switch status {
	case http.StatusMethodNotAllowed:
		if header.Get("Allow") == "" {
			t.Errorf("405 without Allow")
		}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		CheckRetryAfter(t, header)
	}
	CheckNoZeroTime(t, body)
	return p
}

// CheckRecorded is CheckProblem of a recorded answer.
func CheckRecorded(t testing.TB, rec *httptest.ResponseRecorder) Problem {
	t.Helper()
	return CheckProblem(t, rec.Code, rec.Header(), rec.Body.Bytes())
}

// CheckRetryAfter fails t unless header has a Retry-After of whole seconds,
// at least 1.
func CheckRetryAfter(t testing.TB, header http.Header) int {
	t.Helper()
	v := header.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds ≥ 1", v)
	}
	return n
}

// CheckNoZeroTime fails t if body holds the zero time.Time, which an API
// must leave out instead.
func CheckNoZeroTime(t testing.TB, body []byte) {
	t.Helper()
	if bytes.Contains(body, []byte("0001-01-01")) {
		t.Errorf("answer holds the zero time: %s", body)
	}
}

func knownType(typ string) bool {
	if typ == "about:blank" {
		return true
	}
	for _, k := range httpapi.Kinds() {
		if typ == k.URI() {
			return true
		}
	}
	return false
}

// IsProblem reports whether header says the body is a problem.
func IsProblem(header http.Header) bool {
	return strings.HasPrefix(header.Get("Content-Type"), httpapi.ContentTypeProblem)
}
