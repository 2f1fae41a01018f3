package console

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
)

// Every error the console's API answers is a problem (docs/http-api.md),
// which the page reads through its detail.
func TestErrorsAreProblems(t *testing.T) {
	s := newTestService(t, Config{MaxStreams: 1}, nil)
	h := s.Handler()
	cookie, csrf := signIn(t, h, adminTok)
	signedIn := func(r *http.Request) {
		r.AddCookie(cookie)
		r.Header.Set(CSRFHeader, csrf)
	}
	// The only stream allowed, held by someone else.
	held, _, err := s.hub.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer s.hub.unsubscribe(held)
	tests := []struct {
		name, method, path, body string
		mod                      func(*http.Request)
		status                   int
		kind                     httpapi.Kind
	}{
		{"a wrong token", "POST", "/console/api/login", `{"token":"guess"}`, nil, 401, httpapi.Unauthorized},
		{"a sign-in without token or code", "POST", "/console/api/login", `{}`, nil, 400, httpapi.InvalidParameter},
		{"a sign-in body over 4 KiB", "POST", "/console/api/login", `{"token":"` + strings.Repeat("x", 5000) + `"}`, nil, 413, ""},
		{"a sign-in from another site", "POST", "/console/api/login", `{"token":"x"}`, func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }, 403, ""},
		{"no session", "GET", "/console/api/state", "", nil, 401, httpapi.Unauthorized},
		{"an unknown endpoint", "GET", "/console/api/nothing", "", nil, 404, ""},
		{"a POST of the page", "POST", "/console/", "", nil, 405, ""},
		{"an action without WeChat settings", "POST", "/console/api/kf/accounts", `{}`, signedIn, 503, ""},
		{"a stream beyond the limit", "GET", "/console/api/events", "", signedIn, 503, httpapi.NotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(h, tt.method, tt.path, tt.body, tt.mod)
			if w.Code != tt.status {
				t.Fatalf("%d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if p := httpapitest.CheckRecorded(t, w); p.Type != tt.kind.URI() {
				t.Fatalf("type %q, want %q", p.Type, tt.kind.URI())
			}
		})
	}
}

// The answers with a time write it in UTC with whole seconds.
func TestSignInTimesAreUTCSeconds(t *testing.T) {
	h := newTestService(t, Config{}, nil).Handler()
	w := do(h, "POST", "/console/api/login", `{"token":"`+adminTok+`"}`, nil)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	httpapitest.CheckNoZeroTime(t, w.Body.Bytes())
	body := w.Body.String()
	i := strings.Index(body, `"expires":"`)
	if i < 0 {
		t.Fatalf("no expires in %s", body)
	}
	exp := body[i+len(`"expires":"`):]
	exp = exp[:strings.IndexByte(exp, '"')]
	if len(exp) != len("2026-12-05T07:14:59Z") || !strings.HasSuffix(exp, "Z") {
		t.Fatalf("expires %q is not RFC 3339 UTC with whole seconds", exp)
	}
}

// The state and its deltas write times as every kefu answer does: UTC,
// whole seconds; an unknown time is left out.
func TestStateTimesAreUTCSeconds(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	at := time.Date(2026, 12, 5, 15, 14, 59, 987654321, time.FixedZone("CST", 8*3600))
	s.hub.update(func(st *state, o *ops) {
		st.waiting["o1"] = &Waiting{OpenID: "o1", Since: at, EstimatedAt: at}
		o.put("waiting", "o1", st.waiting["o1"])
	})
	b, err := s.hub.snapshotJSON()
	if err != nil {
		t.Fatal(err)
	}
	frame := deltaFrame(1, at, ops{{C: "served", K: "o2", V: Served{OpenID: "o2", At: at}}, {C: "agents", V: AgentSession{OpenID: "o3"}}})
	for name, body := range map[string][]byte{"state": b, "delta": frame} {
		httpapitest.CheckNoZeroTime(t, body)
		if strings.Contains(string(body), "+08:00") || strings.Contains(string(body), ".987") {
			t.Errorf("%s: a time not in UTC whole seconds: %s", name, body)
		}
		if !strings.Contains(string(body), `"2026-12-05T07:14:59Z"`) {
			t.Errorf("%s: no time in UTC whole seconds: %s", name, body)
		}
	}
}
