package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
)

func TestWriteProblem(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		detail     string
		opts       []httpapi.Option
		wantType   string
		wantTitle  string
		wantParam  string
		wantCode   int
		wantRetry  string
		wantDetail string
	}{
		{name: "a plain status is about:blank titled with the status text", status: 404, detail: "unknown customer",
			wantType: "about:blank", wantTitle: "Not Found", wantDetail: "unknown customer"},
		{name: "a parameter makes an invalid-parameter problem", status: 400, detail: "limit: want an integer from 1 to 100",
			opts: []httpapi.Option{httpapi.Param("limit")}, wantType: httpapi.TypeBase + "invalid-parameter", wantTitle: "Invalid parameter",
			wantParam: "limit", wantDetail: "limit: want an integer from 1 to 100"},
		{name: "WeChat's code makes a wechat-refused problem", status: 502, detail: "kf account exists",
			opts: []httpapi.Option{httpapi.WeChat(65403, "kf account exists")}, wantType: httpapi.TypeBase + "wechat-refused",
			wantTitle: "WeChat refused the request", wantCode: 65403, wantDetail: "kf account exists"},
		{name: "not ready carries Retry-After rounded up", status: 503, detail: "no queue snapshot yet",
			opts:     []httpapi.Option{httpapi.Type(httpapi.NotReady), httpapi.RetryAfter(1500 * time.Millisecond)},
			wantType: httpapi.TypeBase + "not-ready", wantTitle: "Not ready", wantRetry: "2", wantDetail: "no queue snapshot yet"},
		{name: "an explicit type wins over the parameter's", status: 401, detail: "sign in",
			opts: []httpapi.Option{httpapi.Type(httpapi.Unauthorized), httpapi.Param("token")}, wantType: httpapi.TypeBase + "unauthorized",
			wantTitle: "Unauthorized", wantParam: "token", wantDetail: "sign in"},
		{name: "an empty detail is the title", status: 500, wantType: "about:blank", wantTitle: "Internal Server Error",
			wantDetail: "Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			httpapi.WriteProblem(rec, tt.status, tt.detail, tt.opts...)
			p := httpapitest.CheckRecorded(t, rec)
			if p.Type != tt.wantType || p.Title != tt.wantTitle || p.Param != tt.wantParam || p.Detail != tt.wantDetail {
				t.Fatalf("got %+v", p)
			}
			if (p.ErrCode == nil) != (tt.wantCode == 0) || (p.ErrCode != nil && *p.ErrCode != tt.wantCode) {
				t.Fatalf("errcode %v, want %d", p.ErrCode, tt.wantCode)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Fatalf("Retry-After %q, want %q", got, tt.wantRetry)
			}
		})
	}
}

func TestWriteProblemMembersAreExactlyTheContract(t *testing.T) {
	rec := httptest.NewRecorder()
	httpapi.WriteProblem(rec, 400, "bad", httpapi.Param("q"))
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	keys := []string{}
	for k := range m {
		keys = append(keys, k)
	}
	want := map[string]bool{"type": true, "title": true, "status": true, "detail": true, "param": true, "error": true}
	if len(m) != len(want) {
		t.Fatalf("members %v, want %v", keys, want)
	}
	for k := range m {
		if !want[k] {
			t.Fatalf("unexpected member %q in %s", k, rec.Body)
		}
	}
	if m["status"] != float64(400) {
		t.Fatalf("status member %v is not the number 400", m["status"])
	}
}

func TestDetailIsBounded(t *testing.T) {
	rec := httptest.NewRecorder()
	httpapi.WriteProblem(rec, 400, strings.Repeat("é", 10_000)+"\xff", httpapi.WeChat(1, strings.Repeat("x", 10_000)))
	p := httpapitest.CheckRecorded(t, rec)
	if n := utf8.RuneCountInString(p.Detail); n != httpapi.MaxDetail || !strings.HasSuffix(p.Detail, "…") {
		t.Fatalf("detail of %d characters, want %d ending in an ellipsis", n, httpapi.MaxDetail)
	}
	if len(p.ErrMsg) > 1024 {
		t.Fatalf("errmsg of %d bytes kept", len(p.ErrMsg))
	}
	if rec.Body.Len() > 4096 {
		t.Fatalf("a problem of %d bytes", rec.Body.Len())
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kf1@test", `"kf1@test"`},
		{"a\nb\x00", `"a\nb\x00"`},
		{"\xff", `"` + "\uFFFD" + `"`},
		{strings.Repeat("a", 100), `"` + strings.Repeat("a", httpapi.MaxQuoted-1) + `…"`},
	}
	for _, tt := range tests {
		if got := httpapi.Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Minute: 60, -time.Second: 1} {
		if got := httpapi.RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
	rec := httptest.NewRecorder()
	httpapi.SetRetryAfter(rec, 5*time.Second)
	if rec.Header().Get("Retry-After") != "5" {
		t.Fatalf("SetRetryAfter: %q", rec.Header().Get("Retry-After"))
	}
}

func TestWriteJSON(t *testing.T) {
	type item struct {
		At      time.Time  `json:"at"`
		Maybe   time.Time  `json:"maybe,omitzero"`
		Ptr     *time.Time `json:"ptr,omitempty"`
		Unknown *time.Time `json:"unknown,omitempty"`
	}
	shanghai := time.FixedZone("CST", 8*3600)
	at := time.Date(2026, 12, 5, 15, 14, 59, 987654321, shanghai)
	in := struct {
		Items []item           `json:"items"`
		ByKey map[string]any   `json:"by_key"`
		Text  string           `json:"text"`
		Raw   json.RawMessage  `json:"raw"`
		Arr   [1]time.Time     `json:"arr"`
		Meta  map[string]int64 `json:"meta"`
	}{
		Items: []item{{At: at, Ptr: &at}},
		ByKey: map[string]any{"t": at},
		Text:  "<b>2026-12-05T07:14:59.5Z</b>",
		Raw:   json.RawMessage(`{"x":1}`),
		Arr:   [1]time.Time{at},
		Meta:  map[string]int64{"n": 1},
	}
	rec := httptest.NewRecorder()
	httpapi.WriteJSON(rec, 200, in)
	want := `{"items":[{"at":"2026-12-05T07:14:59Z","ptr":"2026-12-05T07:14:59Z"}],"by_key":{"t":"2026-12-05T07:14:59Z"},` +
		`"text":"<b>2026-12-05T07:14:59.5Z</b>","raw":{"x":1},"arr":["2026-12-05T07:14:59Z"],"meta":{"n":1}}` + "\n"
	if rec.Body.String() != want {
		t.Fatalf("body\n%s\nwant\n%s", rec.Body, want)
	}
	if rec.Header().Get("Content-Type") != "application/json; charset=utf-8" || rec.Header().Get("Cache-Control") != "no-store" ||
		rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers %v", rec.Header())
	}
	// The value given is not changed.
	if !in.Items[0].At.Equal(at) || in.Items[0].At.Nanosecond() == 0 || in.Items[0].Ptr != &at || at.Nanosecond() == 0 {
		t.Fatal("WriteJSON changed its argument")
	}
	if in.ByKey["t"].(time.Time).Nanosecond() == 0 {
		t.Fatal("WriteJSON changed a map of its argument")
	}
}

type embeddedTimes struct {
	At time.Time `json:"at"`
}

func TestTimesReachesEmbeddedStructsOfUnexportedTypes(t *testing.T) {
	v := struct {
		embeddedTimes
		N int `json:"n"`
	}{embeddedTimes{time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))}, 1}
	b, err := json.Marshal(httpapi.Times(v))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"at":"2026-01-02T02:04:05Z","n":1}` {
		t.Fatalf("got %s", b)
	}
	if v.At.Nanosecond() != 6 {
		t.Fatal("Times changed its argument")
	}
}

func TestTimesLeavesTimelessValuesAlone(t *testing.T) {
	type plain struct{ A, B string }
	v := &plain{"a", "b"}
	if got := httpapi.Times(v); got != any(v) {
		t.Fatal("a value without times was copied")
	}
	if httpapi.Times(nil) != nil {
		t.Fatal("nil")
	}
}

func TestRoutesAnswersUnknownPathsAndMethodsWithProblems(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/x/things", func(w http.ResponseWriter, _ *http.Request) { httpapi.WriteJSON(w, 200, []int{1}) })
	h := httpapi.Routes(mux)
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/x/things", 200},
		{"GET", "/api/x/nothing", 404},
		{"DELETE", "/api/x/things", 405},
		{"GET", "/api/x/../x/things", 0}, // the mux's redirect to the clean path
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if tt.status == 0 {
			if rec.Code < 300 || rec.Code > 399 || httpapitest.IsProblem(rec.Header()) {
				t.Fatalf("%s %s: %d %v, want the mux's redirect", tt.method, tt.path, rec.Code, rec.Header())
			}
			continue
		}
		if rec.Code != tt.status {
			t.Fatalf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.status)
		}
		if tt.status >= 400 {
			httpapitest.CheckRecorded(t, rec)
		}
		if tt.status == 405 && !strings.Contains(rec.Header().Get("Allow"), "GET") {
			t.Fatalf("Allow %q", rec.Header().Get("Allow"))
		}
	}
}
