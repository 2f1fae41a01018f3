package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/api"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

var shanghai = time.FixedZone("CST", 8*3600)

func post(id int64, openid string, created time.Time, content string) events.FeedbackPost {
	return events.FeedbackPost{
		Meta:      events.Meta{ProductID: "1234", OccurredAt: created},
		ID:        strconv.FormatInt(id, 10),
		OpenID:    openid,
		Content:   content,
		CreatedAt: created,
		UpdatedAt: created,
	}
}

// seeded is a store around two days of Asia/Shanghai time:
// posts 1 (the evening before), 2 and 3 (the day's first and last
// seconds, both o-a) and 4 (the next day, o-b); o-a had a session with
// kf1 closed just before post 2.
func seeded(t *testing.T) store.Store {
	t.Helper()
	s := storetest.Open(t, storetest.SQLite)
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, shanghai)
	ctx := context.Background()
	err := s.UpsertPosts(ctx, []events.FeedbackPost{
		post(1, "o-b", day.Add(-30*time.Minute), "evening before"),
		post(2, "o-a", day, "first second: LOGIN fails"),
		post(3, "o-a", day.Add(24*time.Hour-time.Second), "last second"),
		post(4, "o-b", day.Add(24*time.Hour), "next day"),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.RecordSessions(ctx, []store.SessionFact{
		{Kind: store.SessionFactCreated, OpenID: "o-a", KfAccount: "kf1", At: day.Add(-time.Hour)},
		{Kind: store.SessionFactClosed, OpenID: "o-a", KfAccount: "kf1", At: day.Add(-time.Minute)},
		{Kind: store.SessionFactClosed, OpenID: "o-b", KfAccount: "kf2", At: day.Add(-2 * time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

type postsBody struct {
	Items      []store.Post `json:"items"`
	NextCursor *string      `json:"next_cursor"`
}

type sessionsBody struct {
	Items      []store.Session `json:"items"`
	NextCursor *string         `json:"next_cursor"`
}

// problem checks an error answer is a problem (docs/http-api.md).
func problem(t *testing.T, rec *httptest.ResponseRecorder) httpapitest.Problem {
	t.Helper()
	return httpapitest.CheckRecorded(t, rec)
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}

func postIDs(items []store.Post) []string {
	out := []string{}
	for _, p := range items {
		out = append(out, p.ID)
	}
	return out
}

func TestPostsFilters(t *testing.T) {
	h := api.New(seeded(t), zap.NewNop())
	for _, c := range []struct {
		name  string
		query string
		want  []string
	}{
		{"no parameter lists every post newest first", "", []string{"4", "3", "2", "1"}},
		{"openid selects one customer", "openid=o-a", []string{"3", "2"}},
		{"a from day starts at midnight in Asia/Shanghai", "from=2025-03-01", []string{"4", "3", "2"}},
		{"a to day includes the whole day in Asia/Shanghai", "to=2025-03-01", []string{"3", "2", "1"}},
		{"from and to the same day select that day", "from=2025-03-01&to=2025-03-01", []string{"3", "2"}},
		{"an RFC 3339 from is inclusive", "from=" + url.QueryEscape("2025-03-01T23:59:59+08:00"), []string{"4", "3"}},
		{"an RFC 3339 to is exclusive", "to=2025-02-28T16:00:00Z", []string{"1"}},
		{"an unencoded + in a zone offset is understood", "from=2025-03-01T23:59:59+08:00", []string{"4", "3"}},
		{"q searches content ignoring case", "q=login", []string{"2"}},
		{"q is literal", "q=" + url.QueryEscape("%"), []string{}},
		{"limit cuts the page", "limit=1", []string{"4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(t, h, http.MethodGet, api.PathPosts+"?"+c.query)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			body := decode[postsBody](t, rec)
			if got := postIDs(body.Items); !slices.Equal(got, c.want) {
				t.Errorf("ids %v, want %v", got, c.want)
			}
			if body.NextCursor == nil {
				t.Errorf("next_cursor missing from %s", rec.Body)
			}
		})
	}
}

func TestPostsCarryTheirLinkedSession(t *testing.T) {
	h := api.New(seeded(t), nil)
	rec := get(t, h, http.MethodGet, api.PathPosts+"?openid=o-a")
	var raw struct {
		Items []map[string]json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || len(raw.Items) != 2 {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	var session map[string]string
	if err := json.Unmarshal(raw.Items[1]["session"], &session); err != nil {
		t.Fatalf("post 2 has no session object: %s", rec.Body)
	}
	if session["kf_account"] != "kf1" || session["closed_at"] != "2025-02-28T15:59:00Z" || session["started_at"] != "2025-02-28T15:00:00Z" {
		t.Errorf("session = %v", session)
	}
}

func TestPostsPaginationFollowsNextCursor(t *testing.T) {
	h := api.New(seeded(t), zap.NewNop())
	var got []string
	target := api.PathPosts + "?limit=3"
	for range 5 {
		body := decode[postsBody](t, get(t, h, http.MethodGet, target))
		got = append(got, postIDs(body.Items)...)
		if *body.NextCursor == "" {
			break
		}
		target = api.PathPosts + "?limit=3&cursor=" + url.QueryEscape(*body.NextCursor)
	}
	if want := []string{"4", "3", "2", "1"}; !slices.Equal(got, want) {
		t.Errorf("walked %v, want %v", got, want)
	}
}

func TestSessions(t *testing.T) {
	h := api.New(seeded(t), zap.NewNop())
	for _, c := range []struct {
		name      string
		query     string
		wantAgent []string
		wantPosts [][]string
	}{
		{"closed sessions newest first with their linked posts", "", []string{"kf1", "kf2"}, [][]string{{"3", "2"}, {"4", "1"}}},
		{"kf_account selects one agent", "kf_account=kf2", []string{"kf2"}, [][]string{{"4", "1"}}},
		{"openid selects one customer", "openid=o-a", []string{"kf1"}, [][]string{{"3", "2"}}},
		{"to bounds closed_at", "to=" + url.QueryEscape("2025-02-28T15:00:00Z"), []string{"kf2"}, [][]string{{"4", "1"}}},
		{"limit and from", "limit=1&from=2025-02-28", []string{"kf1"}, [][]string{{"3", "2"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(t, h, http.MethodGet, api.PathSessions+"?"+c.query)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			body := decode[sessionsBody](t, rec)
			var agents []string
			var posts [][]string
			for _, s := range body.Items {
				agents = append(agents, s.KfAccount)
				var ids []string
				for _, p := range s.Posts {
					ids = append(ids, p.ID)
				}
				posts = append(posts, ids)
			}
			if !slices.Equal(agents, c.wantAgent) {
				t.Errorf("agents %v, want %v", agents, c.wantAgent)
			}
			if !slices.EqualFunc(posts, c.wantPosts, slices.Equal) {
				t.Errorf("posts %v, want %v", posts, c.wantPosts)
			}
		})
	}
}

func TestBadParametersAreNamed(t *testing.T) {
	h := api.New(seeded(t), zap.NewNop())
	for _, c := range []struct {
		name, target, param string
	}{
		{"limit zero", api.PathPosts + "?limit=0", "limit"},
		{"limit above the maximum", api.PathPosts + "?limit=501", "limit"},
		{"limit not a number", api.PathSessions + "?limit=ten", "limit"},
		{"from not a time", api.PathPosts + "?from=yesterday", "from"},
		{"from an impossible day", api.PathPosts + "?from=2025-02-30", "from"},
		{"to in another format", api.PathSessions + "?to=20250301", "to"},
		{"to before from", api.PathPosts + "?from=2025-03-02&to=2025-03-01", "to"},
		{"to equal to from", api.PathPosts + "?from=2025-03-01T00:00:00Z&to=2025-03-01T00:00:00Z", "to"},
		{"forged cursor", api.PathPosts + "?cursor=" + url.QueryEscape("' OR 1=1 --"), "cursor"},
		{"openid twice", api.PathPosts + "?openid=a&openid=b", "openid"},
		{"openid too long", api.PathSessions + "?openid=" + strings.Repeat("x", 129), "openid"},
		{"q too long", api.PathPosts + "?q=" + strings.Repeat("字", 257), "q"},
		{"q not UTF-8", api.PathPosts + "?q=%ff", "q"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(t, h, http.MethodGet, c.target)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
			}
			body := problem(t, rec)
			if body.Param != c.param || !strings.HasPrefix(body.Detail, c.param+": ") || body.Type != httpapi.InvalidParameter.URI() {
				t.Errorf("error %+v does not name parameter %q", body, c.param)
			}
		})
	}
}

func TestSessionsCursorIsNotAPostsCursor(t *testing.T) {
	h := api.New(seeded(t), zap.NewNop())
	body := decode[sessionsBody](t, get(t, h, http.MethodGet, api.PathSessions+"?limit=1"))
	if *body.NextCursor == "" {
		t.Fatal("no sessions cursor")
	}
	rec := get(t, h, http.MethodGet, api.PathPosts+"?cursor="+url.QueryEscape(*body.NextCursor))
	if rec.Code != http.StatusBadRequest || problem(t, rec).Param != "cursor" {
		t.Errorf("status %d %s, want 400 naming cursor", rec.Code, rec.Body)
	}
}

func TestMethods(t *testing.T) {
	h := api.New(seeded(t), zap.NewNop())
	for _, c := range []struct {
		name, method, path string
		status             int
	}{
		{"GET posts is served", http.MethodGet, api.PathPosts, http.StatusOK},
		{"HEAD posts is served", http.MethodHead, api.PathPosts, http.StatusOK},
		{"POST posts is refused", http.MethodPost, api.PathPosts, http.StatusMethodNotAllowed},
		{"DELETE sessions is refused", http.MethodDelete, api.PathSessions, http.StatusMethodNotAllowed},
		{"PUT sessions is refused", http.MethodPut, api.PathSessions, http.StatusMethodNotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(t, h, c.method, c.path)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d", rec.Code, c.status)
			}
			if c.status == http.StatusMethodNotAllowed {
				if allow := rec.Header().Get("Allow"); allow != "GET, HEAD" {
					t.Errorf("Allow = %q, want GET, HEAD", allow)
				}
				if body := problem(t, rec); body.Error == "" {
					t.Errorf("no error message")
				}
			}
		})
	}
}

func TestStoreFailureIsLoggedNotShown(t *testing.T) {
	s := seeded(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.ErrorLevel)
	h := api.New(s, zap.New(core))
	for _, path := range []string{api.PathPosts, api.PathSessions} {
		rec := get(t, h, http.MethodGet, path+"?openid=o-a")
		if rec.Code != http.StatusInternalServerError {
			t.Fatalf("%s: status %d, want 500", path, rec.Code)
		}
		if body := problem(t, rec); body.Error != "internal error" {
			t.Errorf("%s: error %q reveals details", path, body.Error)
		}
	}
	if n := logs.Len(); n != 2 {
		t.Errorf("%d errors logged, want one per failed request", n)
	}
	for _, e := range logs.All() {
		if strings.Contains(e.Message+e.ContextMap()["error"].(string), "o-a") {
			t.Errorf("log entry holds the openid: %v", e)
		}
	}
}

// Times are RFC 3339 in UTC with whole seconds; a time the store does not
// know (no reply yet, no receive time) is left out, never the year 1.
func TestTimesAreUTCSecondsAndUnknownOnesLeftOut(t *testing.T) {
	h := api.New(seeded(t), zap.NewNop())
	for _, target := range []string{api.PathPosts + "?openid=o-b", api.PathSessions + "?openid=o-a"} {
		rec := get(t, h, http.MethodGet, target)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
		httpapitest.CheckNoZeroTime(t, rec.Body.Bytes())
		body := rec.Body.String()
		if strings.Contains(body, "+08:00") || strings.Contains(body, `"last_reply_at"`) || strings.Contains(body, `"received_at"`) {
			t.Errorf("%s: a time not in UTC, or an unknown one written: %s", target, body)
		}
	}
	body := get(t, h, http.MethodGet, api.PathPosts+"?openid=o-b").Body.String()
	// Post 1: 2025-03-01 00:00 in Shanghai less 30 minutes.
	if !strings.Contains(body, `"created_at":"2025-02-28T15:30:00Z"`) {
		t.Errorf("post 1's created_at not in UTC: %s", body)
	}
	body = get(t, h, http.MethodGet, api.PathSessions+"?openid=o-a").Body.String()
	if !strings.Contains(body, `"closed_at":"2025-02-28T15:59:00Z"`) {
		t.Errorf("o-a's session closed_at not in UTC: %s", body)
	}
}
