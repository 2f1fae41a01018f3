package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Listing posts: filters, limits, pagination and cursors.

func testPostFilters(t *testing.T, backend Backend) {
	s := Open(t, backend)
	day1 := time.Date(2025, 3, 1, 0, 0, 0, 0, shanghai)
	day2, day3 := day1.AddDate(0, 0, 1), day1.AddDate(0, 0, 2)
	upsert(t, s,
		post(1, "o-a", day1.Add(10*time.Hour), "App crashes on LOGIN"),
		post(2, "o-a", day2.Add(10*time.Hour), "登录失败"),
		post(3, "o-b", day3.Add(-time.Second), "login is slow"),
		post(4, "o-b", day3, "ÄPFEL und Birnen"),
		post(5, "", day3.Add(time.Hour), "anonymous"),
	)
	checkPostQueries(t, s, []postQuery{
		{"no filter lists everything", store.PostQuery{}, []string{"5", "4", "3", "2", "1"}},
		{"openid selects one customer", store.PostQuery{OpenID: "o-a"}, []string{"2", "1"}},
		{"openid that nobody has selects nothing", store.PostQuery{OpenID: "o-z"}, []string{}},
		{"from is inclusive", store.PostQuery{From: day3}, []string{"5", "4"}},
		{"to is exclusive", store.PostQuery{To: day3}, []string{"3", "2", "1"}},
		{"from and to select a day", store.PostQuery{From: day2, To: day3}, []string{"3", "2"}},
		{"q ignores ASCII case", store.PostQuery{Q: "login"}, []string{"3", "1"}},
		{"q ignores non-ASCII case", store.PostQuery{Q: "äpfel"}, []string{"4"}},
		{"q finds Chinese text", store.PostQuery{Q: "登录"}, []string{"2"}},
		{"q finds a middle substring", store.PostQuery{Q: "es on l"}, []string{"1"}},
		{"filters combine", store.PostQuery{OpenID: "o-b", Q: "LOGIN", From: day2}, []string{"3"}},
		{"limit cuts the newest", store.PostQuery{Limit: 2}, []string{"5", "4"}},
	})
}

func testLimit(t *testing.T, backend Backend) {
	s := Open(t, backend)
	const n = store.MaxLimit + 20
	batch := make([]events.FeedbackPost, 0, n)
	for i := range n {
		batch = append(batch, post(int64(i+1), "o", t0.Add(time.Duration(i)*time.Second), "p"))
	}
	upsert(t, s, batch...)
	for _, c := range []struct {
		name  string
		limit int
		want  int
	}{
		{"zero means the default", 0, store.DefaultLimit},
		{"negative means the default", -3, store.DefaultLimit},
		{"within bounds is kept", 7, 7},
		{"the maximum is allowed", store.MaxLimit, store.MaxLimit},
		{"above the maximum is capped", store.MaxLimit + 10, store.MaxLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			page := listPosts(t, s, store.PostQuery{Limit: c.limit})
			if len(page.Items) != c.want || page.NextCursor == "" {
				t.Errorf("limit %d: %d items, cursor %q; want %d items and a cursor", c.limit, len(page.Items), page.NextCursor, c.want)
			}
		})
	}
}

func testPostPagination(t *testing.T, backend Backend) {
	s := Open(t, backend)
	var batch []events.FeedbackPost
	original := map[string]bool{}
	for i := range 23 {
		// Groups of three share a created_at, so the id must break ties.
		p := post(int64(1000+i*7%23), "o", t0.Add(time.Duration(i/3)*time.Minute), fmt.Sprintf("post %d", i))
		batch = append(batch, p)
		original[p.ID] = true
	}
	upsert(t, s, batch...)

	walked := walkPages(t, 20, func(cursor string) ([]store.Post, string) {
		page := listPosts(t, s, store.PostQuery{Limit: 5, Cursor: cursor})
		if cursor == "" {
			last := page.Items[len(page.Items)-1]
			lastID, _ := strconv.ParseInt(last.ID, 10, 64)
			// Written between pages: newer than everything, older than
			// everything, and two that tie with the cursor's row.
			upsert(t, s,
				post(5000, "o", t0.Add(time.Hour), "newest"),
				post(5001, "o", t0.Add(-time.Hour), "oldest"),
				post(lastID+100000, "o", last.CreatedAt, "ties, sorts before the cursor"),
				post(lastID-500, "o", last.CreatedAt, "ties, sorts after the cursor"),
			)
		}
		return page.Items, page.NextCursor
	})
	seen := map[string]int{}
	for _, p := range walked {
		seen[p.ID]++
	}
	for id := range original {
		if seen[id] != 1 {
			t.Errorf("post %s seen %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("post %s seen %d times", id, n)
		}
	}
	for i := 1; i < len(walked); i++ {
		if !newerFirst(walked[i-1], walked[i]) {
			t.Errorf("order broken at %d: %s (%v) before %s (%v)", i, walked[i-1].ID, walked[i-1].CreatedAt, walked[i].ID, walked[i].CreatedAt)
		}
	}
	if seen["5001"] != 1 {
		t.Errorf("a post older than the cursor written between pages was not reached")
	}
}

func testInvalidCursor(t *testing.T, backend Backend) {
	s := Open(t, backend)
	upsert(t, s, post(1, "o", t0, "a"), post(2, "o", t0, "b"))
	record(t, s, closed("o", "kf", t0.Add(-time.Hour)), closed("o", "kf", t0.Add(-2*time.Hour)))
	postCursor := listPosts(t, s, store.PostQuery{Limit: 1}).NextCursor
	sessionCursor := listSessions(t, s, store.SessionQuery{Limit: 1}).NextCursor
	if postCursor == "" || sessionCursor == "" {
		t.Fatalf("no cursors to test with: %q, %q", postCursor, sessionCursor)
	}
	for _, c := range []string{"not base64!", "' OR 1=1 --", "cDEuMTIz", sessionCursor, postCursor[:len(postCursor)-2]} {
		if _, err := s.ListPosts(ctx(t), store.PostQuery{Cursor: c}); !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("ListPosts cursor %q: error %v, want ErrInvalidCursor", c, err)
		}
	}
	for _, c := range []string{"garbage", postCursor} {
		if _, err := s.ListSessions(ctx(t), store.SessionQuery{Cursor: c}); !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("ListSessions cursor %q: error %v, want ErrInvalidCursor", c, err)
		}
	}
}

func testFiltersAreLiteral(t *testing.T, backend Backend) {
	s := Open(t, backend)
	const injection = `' OR 1=1 --`
	upsert(t, s,
		post(1, "o-1", t0, "100% sure"),
		post(2, "o-2", t0.Add(time.Minute), "snake_case name"),
		post(3, "o-3", t0.Add(2*time.Minute), `back\slash`),
		post(4, "o-4", t0.Add(3*time.Minute), "it's broken"),
		post(5, injection, t0.Add(4*time.Minute), "quote "+injection+" inside"),
		post(6, "o-6", t0.Add(5*time.Minute), "plain words"),
	)
	record(t, s, closed("o-1", "kf1", t0.Add(-time.Minute)), closed(injection, "kf1", t0.Add(-time.Minute)))
	checkPostQueries(t, s, []postQuery{
		{"an injection as openid matches that openid only", store.PostQuery{OpenID: injection}, []string{"5"}},
		{"percent as openid is no wildcard", store.PostQuery{OpenID: "%"}, []string{}},
		{"underscore as openid is no wildcard", store.PostQuery{OpenID: "o-_"}, []string{}},
		{"backslash as openid matches nothing", store.PostQuery{OpenID: `\`}, []string{}},
		{"percent in q matches a literal percent", store.PostQuery{Q: "%"}, []string{"1"}},
		{"underscore in q matches a literal underscore", store.PostQuery{Q: "_"}, []string{"2"}},
		{"backslash in q matches a literal backslash", store.PostQuery{Q: `\`}, []string{"3"}},
		{"a quote in q matches literal quotes", store.PostQuery{Q: "'"}, []string{"5", "4"}},
		{"an injection in q matches the text only", store.PostQuery{Q: injection}, []string{"5"}},
		{"escape sequences in q stay literal", store.PostQuery{Q: `\%`}, []string{}},
	})
	checkSessionCounts(t, s, []sessionCount{
		{"an injection as session openid matches that openid only", store.SessionQuery{OpenID: injection}, 1},
		{"an injection as kf_account matches nothing", store.SessionQuery{KfAccount: injection}, 0},
		{"percent as kf_account is no wildcard", store.SessionQuery{KfAccount: "%"}, 0},
		{"underscore as kf_account is no wildcard", store.SessionQuery{KfAccount: "kf_"}, 0},
	})
	// Nothing above changed the data.
	assertIDs(t, "all posts afterwards", ids(listPosts(t, s, store.PostQuery{}).Items), []string{"6", "5", "4", "3", "2", "1"})
}
