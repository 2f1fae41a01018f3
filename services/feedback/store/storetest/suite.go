package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// shanghai is the zone Tucao writes its times in.
var shanghai = time.FixedZone("CST", 8*3600)

// t0 is the start of every scenario.
var t0 = time.Date(2025, 3, 3, 9, 0, 0, 0, shanghai)

// Run runs the store contract against backend. Every case gets its own
// empty database and runs in parallel with the others.
func Run(t *testing.T, backend Backend) {
	cases := []struct {
		name string
		run  func(t *testing.T, backend Backend)
	}{
		{"upserted posts are listed whole, newest first", testUpsertThenList},
		{"re-upserting the same version changes nothing", testSameVersionIsNoOp},
		{"a newer version replaces the stored one", testNewerVersionReplaces},
		{"an older version arriving late never overwrites a newer one", testOlderVersionNeverOverwrites},
		{"of duplicates in one batch the newest version is kept", testDuplicatesInBatch},
		{"an invalid post rejects the whole batch", testInvalidPostRejectsBatch},
		{"text no database column can hold is still stored and returned whole", testUnstorableText},
		{"filters select by openid, created_at range and content", testPostFilters},
		{"the limit defaults to 50 and is capped at 500", testLimit},
		{"pagination visits every post once in order while posts arrive", testPostPagination},
		{"a forged cursor or one of the other list is rejected", testInvalidCursor},
		{"filter values are matched literally, never as SQL or wildcards", testFiltersAreLiteral},
		{"a post after a closed session is linked to it", testPostAfterSessionIsLinked},
		{"a post before any session is not linked", testPostBeforeSessionIsNotLinked},
		{"a session fact arriving after the post links it at query time", testLateSessionFactLinks},
		{"a post is linked to the latest session closed before it", testLatestSessionWins},
		{"a post beyond the link window is not linked", testLinkWindow},
		{"another customer's session never links", testOtherCustomerNeverLinks},
		{"a post under the session's pseudonym is linked to it, as one under its openid", testPostUnderPseudonymIsLinked},
		{"a post under another customer's pseudonym never links", testOtherPseudonymNeverLinks},
		{"sessions list the posts under their pseudonym", testSessionsListPseudonymousPosts},
		{"the openid filter finds the customer's posts under their pseudonyms", testOpenIDFilterFindsPseudonymousPosts},
		{"facts stored without a pseudonym get it filled and then link", testFillPseudonyms},
		{"a post naming its session is linked to it, not to a later one", testNamedSessionWinsOverTheLatest},
		{"a session named in another customer's post never links", testNamedSessionOfAnotherCustomerNeverLinks},
		{"a named session links beyond the window and when its fact comes late", testNamedSessionLinksBeyondTheWindowAndLate},
		{"sessions are listed newest first with their linked posts", testSessionsWithLinkedPosts},
		{"a session starts at the created fact since the previous close", testSessionStart},
		{"recording the same session fact twice stores it once", testSessionFactIdempotent},
		{"an invalid session fact rejects the whole batch", testInvalidSessionFact},
		{"sessions filter by openid, agent and closed_at and paginate", testSessionFiltersAndPagination},
		{"reopening keeps the data and applies no migration again", testReopen},
		{"stores opened together apply each migration once", testConcurrentOpen},
		{"ping answers while the store is open", testPing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, backend)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// post builds a post with every kind of field set, so a lost field shows.
func post(id int64, openid string, created time.Time, content string) events.FeedbackPost {
	return events.FeedbackPost{
		Meta:        events.Meta{ProductID: "1234", OccurredAt: created, ReceivedAt: created.Add(time.Second).UTC()},
		ID:          strconv.FormatInt(id, 10),
		OpenID:      openid,
		NickName:    "#゛~",
		AvatarURL:   "https://txc.qq.com/static/a.png",
		Content:     content,
		UserID:      id % 97,
		IsTodo:      true,
		ReplyCount:  1,
		CreatedAt:   created,
		UpdatedAt:   created,
		LastReplyAt: created,
		Images:      json.RawMessage(`[]`),
		Replies:     json.RawMessage(`[{"id":"1","content":"谢谢反馈"}]`),
		Extra:       json.RawMessage(`{"order":"42"}`),
		Raw:         map[string]json.RawMessage{"time": json.RawMessage(`"21分钟前"`)},
	}
}

// version is p as changed at updated.
func version(p events.FeedbackPost, updated time.Time, content string) events.FeedbackPost {
	p.UpdatedAt = updated
	p.Content = content
	p.Updated = true
	return p
}

func upsert(t *testing.T, s store.Store, posts ...events.FeedbackPost) {
	t.Helper()
	if err := s.UpsertPosts(ctx(t), posts); err != nil {
		t.Fatalf("UpsertPosts: %v", err)
	}
}

func record(t *testing.T, s store.Store, facts ...store.SessionFact) {
	t.Helper()
	if err := s.RecordSessions(ctx(t), facts); err != nil {
		t.Fatalf("RecordSessions: %v", err)
	}
}

func created(openid, agent string, at time.Time) store.SessionFact {
	return store.SessionFact{Kind: store.SessionFactCreated, OpenID: openid, KfAccount: agent, At: at}
}

func closed(openid, agent string, at time.Time) store.SessionFact {
	return store.SessionFact{Kind: store.SessionFactClosed, OpenID: openid, KfAccount: agent, At: at}
}

// pseudonymOf stands for feedbacklink's pseudonym: the store only stores
// and compares it.
func pseudonymOf(openid string) string { return "pseudonym-of-" + openid }

func withPseudonym(f store.SessionFact) store.SessionFact {
	f.Pseudonym = pseudonymOf(f.OpenID)
	return f
}

func listPosts(t *testing.T, s store.Store, q store.PostQuery) store.PostPage {
	t.Helper()
	page, err := s.ListPosts(ctx(t), q)
	if err != nil {
		t.Fatalf("ListPosts(%+v): %v", q, err)
	}
	return page
}

func listSessions(t *testing.T, s store.Store, q store.SessionQuery) store.SessionPage {
	t.Helper()
	page, err := s.ListSessions(ctx(t), q)
	if err != nil {
		t.Fatalf("ListSessions(%+v): %v", q, err)
	}
	return page
}

func ids(posts []store.Post) []string {
	out := []string{}
	for _, p := range posts {
		out = append(out, p.ID)
	}
	return out
}

func rawIDs(posts []events.FeedbackPost) []string {
	out := []string{}
	for _, p := range posts {
		out = append(out, p.ID)
	}
	return out
}

func assertIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got ids %v, want %v", what, got, want)
	}
}

// assertSamePost compares posts by their JSON, the form the store keeps.
func assertSamePost(t *testing.T, got, want events.FeedbackPost) {
	t.Helper()
	g, err1 := json.Marshal(got)
	w, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil {
		t.Fatalf("marshal posts: %v, %v", err1, err2)
	}
	if string(g) != string(w) {
		t.Errorf("post %s changed in the store:\n got  %s\n want %s", want.ID, g, w)
	}
}

func onlyPost(t *testing.T, s store.Store, id string) store.Post {
	t.Helper()
	page := listPosts(t, s, store.PostQuery{})
	for _, p := range page.Items {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("post %s not listed (got %v)", id, ids(page.Items))
	return store.Post{}
}

func testUpsertThenList(t *testing.T, backend Backend) {
	s := Open(t, backend)
	a := post(100, "o-a", t0, "first")
	b := post(200, "o-b", t0.Add(time.Hour), "second")
	b.User = json.RawMessage(`{"id":1}`)
	b.HasAdminReply, b.IsSpam, b.IsHidden = true, true, true
	upsert(t, s, a, b)

	page := listPosts(t, s, store.PostQuery{})
	assertIDs(t, "all posts", ids(page.Items), []string{"200", "100"})
	if page.NextCursor != "" {
		t.Errorf("NextCursor = %q on the only page, want empty", page.NextCursor)
	}
	if len(page.Items) == 2 {
		assertSamePost(t, page.Items[0].FeedbackPost, b)
		assertSamePost(t, page.Items[1].FeedbackPost, a)
		if !page.Items[0].CreatedAt.Equal(b.CreatedAt) {
			t.Errorf("created_at = %v, want %v", page.Items[0].CreatedAt, b.CreatedAt)
		}
	}
}

func testSameVersionIsNoOp(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "original")
	upsert(t, s, p)
	// Same updated_at is the same version, whatever the body says: the
	// stored one stays.
	upsert(t, s, version(p, p.UpdatedAt, "same version, other text"))
	upsert(t, s, p)
	got := listPosts(t, s, store.PostQuery{})
	assertIDs(t, "posts", ids(got.Items), []string{"1"})
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, p)
}

func testNewerVersionReplaces(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "original")
	upsert(t, s, p)
	newer := version(p, t0.Add(time.Minute), "edited with a reply")
	newer.ReplyCount = 2
	upsert(t, s, newer)
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, newer)
	if got := listPosts(t, s, store.PostQuery{Q: "edited"}); len(got.Items) != 1 {
		t.Errorf("search finds %d posts by the new content, want 1", len(got.Items))
	}
	if got := listPosts(t, s, store.PostQuery{Q: "original"}); len(got.Items) != 0 {
		t.Errorf("search finds %d posts by the replaced content, want 0", len(got.Items))
	}
}

func testOlderVersionNeverOverwrites(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "v1")
	v3 := version(p, t0.Add(3*time.Minute), "v3")
	upsert(t, s, v3)
	upsert(t, s, version(p, t0.Add(2*time.Minute), "v2"))
	upsert(t, s, p)
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, v3)
}

func testDuplicatesInBatch(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "v1")
	v2 := version(p, t0.Add(2*time.Minute), "v2")
	v2again := version(p, t0.Add(2*time.Minute), "v2 delivered again")
	other := post(2, "o", t0, "other")
	upsert(t, s, p, v2, other, version(p, t0.Add(time.Minute), "v1.5"), v2again)
	assertIDs(t, "posts", ids(listPosts(t, s, store.PostQuery{}).Items), []string{"2", "1"})
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, v2)
}

func testInvalidPostRejectsBatch(t *testing.T, backend Backend) {
	s := Open(t, backend)
	for _, bad := range []struct {
		name  string
		spoil func(p *events.FeedbackPost)
	}{
		{"id not a number", func(p *events.FeedbackPost) { p.ID = "12ab" }},
		{"empty id", func(p *events.FeedbackPost) { p.ID = "" }},
		{"id with a sign", func(p *events.FeedbackPost) { p.ID = "+5" }},
		{"id with a leading zero", func(p *events.FeedbackPost) { p.ID = "05" }},
		{"negative id", func(p *events.FeedbackPost) { p.ID = "-5" }},
		{"id too large for int64", func(p *events.FeedbackPost) { p.ID = "99999999999999999999" }},
		{"no created_at", func(p *events.FeedbackPost) { p.CreatedAt = time.Time{} }},
		{"invalid raw JSON", func(p *events.FeedbackPost) { p.Extra = json.RawMessage(`{`) }},
	} {
		t.Run(bad.name, func(t *testing.T) {
			p := post(1, "o", t0, "x")
			bad.spoil(&p)
			err := s.UpsertPosts(ctx(t), []events.FeedbackPost{post(7, "o", t0, "valid"), p})
			if !errors.Is(err, store.ErrInvalidPost) {
				t.Fatalf("UpsertPosts error = %v, want ErrInvalidPost", err)
			}
			if got := listPosts(t, s, store.PostQuery{}); len(got.Items) != 0 {
				t.Errorf("the valid post of a rejected batch was written: %v", ids(got.Items))
			}
		})
	}
}

func testUnstorableText(t *testing.T, backend Backend) {
	s := Open(t, backend)
	// PostgreSQL text rejects NUL; jsonb would reject \u0000 too.
	p := post(1, "o\x00nul", t0, "crash\x00here")
	p.Extra = json.RawMessage(`{"note":"a\u0000b"}`)
	upsert(t, s, p)
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, p)
	assertIDs(t, "search", ids(listPosts(t, s, store.PostQuery{Q: "here"}).Items), []string{"1"})
}

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
	for _, c := range []struct {
		name string
		q    store.PostQuery
		want []string
	}{
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
	} {
		t.Run(c.name, func(t *testing.T) {
			assertIDs(t, "posts", ids(listPosts(t, s, c.q).Items), c.want)
		})
	}
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

// newerFirst reports whether a sorts strictly before b in list order.
func newerFirst(a, b store.Post) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	x, _ := strconv.ParseInt(a.ID, 10, 64)
	y, _ := strconv.ParseInt(b.ID, 10, 64)
	return x > y
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

	seen := map[string]int{}
	var walked []store.Post
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("pagination does not end")
		}
		page := listPosts(t, s, store.PostQuery{Limit: 5, Cursor: cursor})
		for _, p := range page.Items {
			seen[p.ID]++
		}
		walked = append(walked, page.Items...)
		if pages == 0 {
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
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
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
	for _, c := range []struct {
		name string
		q    store.PostQuery
		want []string
	}{
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
	} {
		t.Run(c.name, func(t *testing.T) {
			assertIDs(t, "posts", ids(listPosts(t, s, c.q).Items), c.want)
		})
	}
	for _, c := range []struct {
		name string
		q    store.SessionQuery
		want int
	}{
		{"an injection as session openid matches that openid only", store.SessionQuery{OpenID: injection}, 1},
		{"an injection as kf_account matches nothing", store.SessionQuery{KfAccount: injection}, 0},
		{"percent as kf_account is no wildcard", store.SessionQuery{KfAccount: "%"}, 0},
		{"underscore as kf_account is no wildcard", store.SessionQuery{KfAccount: "kf_"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := len(listSessions(t, s, c.q).Items); got != c.want {
				t.Errorf("%d sessions, want %d", got, c.want)
			}
		})
	}
	// Nothing above changed the data.
	assertIDs(t, "all posts afterwards", ids(listPosts(t, s, store.PostQuery{}).Items), []string{"6", "5", "4", "3", "2", "1"})
}

func assertLinked(t *testing.T, p store.Post, agent string, closedAt time.Time) {
	t.Helper()
	if p.Session == nil {
		t.Fatalf("post %s is not linked, want linked to %s's session closed at %v", p.ID, agent, closedAt)
	}
	if p.Session.KfAccount != agent || !p.Session.ClosedAt.Equal(closedAt) {
		t.Errorf("post %s linked to %s closed at %v, want %s at %v", p.ID, p.Session.KfAccount, p.Session.ClosedAt, agent, closedAt)
	}
}

func assertNotLinked(t *testing.T, p store.Post) {
	t.Helper()
	if p.Session != nil {
		t.Errorf("post %s linked to %+v, want no link", p.ID, *p.Session)
	}
}

func testPostAfterSessionIsLinked(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, created("o", "kf1@acc", t0), closed("o", "kf1@acc", t0.Add(10*time.Minute)))
	upsert(t, s, post(1, "o", t0.Add(time.Hour), "thanks"))
	p := onlyPost(t, s, "1")
	assertLinked(t, p, "kf1@acc", t0.Add(10*time.Minute))
	if p.Session != nil && !p.Session.StartedAt.Equal(t0) {
		t.Errorf("linked session started_at = %v, want %v", p.Session.StartedAt, t0)
	}
}

func testPostBeforeSessionIsNotLinked(t *testing.T, backend Backend) {
	s := Open(t, backend)
	upsert(t, s, post(1, "o", t0, "before"), post(2, "o", t0.Add(10*time.Minute), "during"),
		post(3, "o", t0.Add(20*time.Minute), "at the close"))
	record(t, s, created("o", "kf1", t0.Add(5*time.Minute)), closed("o", "kf1", t0.Add(20*time.Minute)))
	for _, id := range []string{"1", "2", "3"} {
		assertNotLinked(t, onlyPost(t, s, id))
	}
}

func testLateSessionFactLinks(t *testing.T, backend Backend) {
	s := Open(t, backend)
	upsert(t, s, post(1, "o", t0.Add(time.Hour), "feedback"))
	assertNotLinked(t, onlyPost(t, s, "1"))
	record(t, s, closed("o", "kf1", t0.Add(30*time.Minute)))
	assertLinked(t, onlyPost(t, s, "1"), "kf1", t0.Add(30*time.Minute))
	// The created fact arrives last and gives the link its start.
	record(t, s, created("o", "kf1", t0))
	if p := onlyPost(t, s, "1"); p.Session == nil || !p.Session.StartedAt.Equal(t0) {
		t.Errorf("late created fact: link %+v, want started_at %v", p.Session, t0)
	}
}

func testLatestSessionWins(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s,
		closed("o", "kf1", t0),
		closed("o", "kf2", t0.Add(time.Hour)),
		closed("o", "kf3", t0.Add(3*time.Hour)), // after the post
	)
	upsert(t, s, post(1, "o", t0.Add(2*time.Hour), "x"))
	assertLinked(t, onlyPost(t, s, "1"), "kf2", t0.Add(time.Hour))
}

func testLinkWindow(t *testing.T, backend Backend) {
	for _, c := range []struct {
		name   string
		opts   []store.Option
		after  time.Duration
		linked bool
	}{
		{"within the default 7 days", nil, 7 * 24 * time.Hour, true},
		{"beyond the default 7 days", nil, 7*24*time.Hour + time.Second, false},
		{"within a configured window", []store.Option{store.WithLinkWindow(time.Hour)}, time.Hour, true},
		{"beyond a configured window", []store.Option{store.WithLinkWindow(time.Hour)}, time.Hour + time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Open(t, backend, c.opts...)
			record(t, s, closed("o", "kf1", t0))
			upsert(t, s, post(1, "o", t0.Add(c.after), "x"))
			page := listPosts(t, s, store.PostQuery{})
			if len(page.Items) != 1 {
				t.Fatalf("%d posts, want 1", len(page.Items))
			}
			if c.linked {
				assertLinked(t, page.Items[0], "kf1", t0)
			} else {
				assertNotLinked(t, page.Items[0])
			}
		})
	}
}

func testOtherCustomerNeverLinks(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, closed("o-other", "kf1", t0))
	upsert(t, s, post(1, "o", t0.Add(time.Minute), "x"), post(2, "", t0.Add(time.Minute), "anonymous"))
	assertNotLinked(t, onlyPost(t, s, "1"))
	assertNotLinked(t, onlyPost(t, s, "2"))
}

func testPostUnderPseudonymIsLinked(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, withPseudonym(created("o", "kf1", t0)), withPseudonym(closed("o", "kf1", t0.Add(10*time.Minute))),
		withPseudonym(closed("o", "kf2", t0.Add(5*time.Hour))))
	upsert(t, s,
		post(1, pseudonymOf("o"), t0.Add(time.Hour), "through the link"),
		post(2, "o", t0.Add(2*time.Hour), "posted before pseudonyms"),
		post(3, pseudonymOf("o"), t0.Add(6*time.Hour), "after the second session"),
		post(4, pseudonymOf("o"), t0.Add(5*time.Minute), "before any close"),
	)
	p := onlyPost(t, s, "1")
	assertLinked(t, p, "kf1", t0.Add(10*time.Minute))
	if p.Session != nil && !p.Session.StartedAt.Equal(t0) {
		t.Errorf("a post linked by pseudonym: started_at %v, want %v", p.Session.StartedAt, t0)
	}
	assertLinked(t, onlyPost(t, s, "2"), "kf1", t0.Add(10*time.Minute))
	assertLinked(t, onlyPost(t, s, "3"), "kf2", t0.Add(5*time.Hour))
	assertNotLinked(t, onlyPost(t, s, "4"))

	// A pseudonym recorded with any fact of a customer identifies them,
	// also for a session whose own fact was stored without one.
	record(t, s, closed("o-x", "kf3", t0), withPseudonym(closed("o-x", "kf4", t0.Add(5*time.Hour))))
	upsert(t, s, post(5, pseudonymOf("o-x"), t0.Add(time.Hour), "after the session stored without a pseudonym"))
	assertLinked(t, onlyPost(t, s, "5"), "kf3", t0)
}

func testOtherPseudonymNeverLinks(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, withPseudonym(closed("o-a", "kf1", t0)), withPseudonym(closed("o-b", "kf2", t0.Add(time.Minute))))
	upsert(t, s, post(1, pseudonymOf("o-a"), t0.Add(time.Hour), "a's feedback"), post(2, pseudonymOf("o-c"), t0.Add(time.Hour), "nobody's"))
	assertLinked(t, onlyPost(t, s, "1"), "kf1", t0)
	assertNotLinked(t, onlyPost(t, s, "2"))
}

func testSessionsListPseudonymousPosts(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s,
		withPseudonym(closed("o-a", "kf1", t0)), withPseudonym(closed("o-a", "kf2", t0.Add(3*time.Hour))),
		withPseudonym(closed("o-b", "kf1", t0.Add(time.Minute))),
	)
	upsert(t, s,
		post(1, "o-a", t0.Add(time.Hour), "before pseudonyms"),
		post(2, pseudonymOf("o-a"), t0.Add(2*time.Hour), "through the link"),
		post(3, pseudonymOf("o-a"), t0.Add(4*time.Hour), "after the second"),
		post(4, pseudonymOf("o-b"), t0.Add(2*time.Hour), "b's"),
	)
	got := map[string][]string{}
	for _, sess := range listSessions(t, s, store.SessionQuery{}).Items {
		got[sess.OpenID+"/"+sess.KfAccount] = rawIDs(sess.Posts)
	}
	assertIDs(t, "o-a's first session", got["o-a/kf1"], []string{"2", "1"})
	assertIDs(t, "o-a's second session", got["o-a/kf2"], []string{"3"})
	assertIDs(t, "o-b's session", got["o-b/kf1"], []string{"4"})
	// One page per session: the candidates are gathered per page.
	page := listSessions(t, s, store.SessionQuery{Limit: 1, OpenID: "o-a"})
	if len(page.Items) != 1 {
		t.Fatalf("%d sessions on a page of 1", len(page.Items))
	}
	assertIDs(t, "o-a's newest session alone", rawIDs(page.Items[0].Posts), []string{"3"})
}

func testOpenIDFilterFindsPseudonymousPosts(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, withPseudonym(closed("o-a", "kf1", t0)), closed("o-b", "kf1", t0))
	upsert(t, s,
		post(1, "o-a", t0.Add(time.Hour), "a before pseudonyms"),
		post(2, pseudonymOf("o-a"), t0.Add(2*time.Hour), "a through the link"),
		post(3, pseudonymOf("o-b"), t0.Add(3*time.Hour), "b, whose facts have no pseudonym yet"),
		post(4, pseudonymOf("o-c"), t0.Add(4*time.Hour), "c"),
		post(5, "o-b", t0.Add(5*time.Hour), "b before pseudonyms"),
	)
	for _, c := range []struct {
		name string
		q    store.PostQuery
		want []string
	}{
		{"the openid finds posts under it and under the recorded pseudonym", store.PostQuery{OpenID: "o-a"}, []string{"2", "1"}},
		{"the given pseudonym finds posts no fact records it for", store.PostQuery{OpenID: "o-b", Pseudonym: pseudonymOf("o-b")}, []string{"5", "3"}},
		{"without it they are not found", store.PostQuery{OpenID: "o-b"}, []string{"5"}},
		{"a customer without facts is found by the given pseudonym", store.PostQuery{OpenID: "o-c", Pseudonym: pseudonymOf("o-c")}, []string{"4"}},
		{"a pseudonym as openid finds its posts", store.PostQuery{OpenID: pseudonymOf("o-a")}, []string{"2"}},
		{"other filters still apply", store.PostQuery{OpenID: "o-a", Q: "link"}, []string{"2"}},
		{"pagination walks them", store.PostQuery{OpenID: "o-a", Limit: 1}, []string{"2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			assertIDs(t, "posts", ids(listPosts(t, s, c.q).Items), c.want)
		})
	}
	first := listPosts(t, s, store.PostQuery{OpenID: "o-a", Limit: 1})
	assertIDs(t, "second page", ids(listPosts(t, s, store.PostQuery{OpenID: "o-a", Limit: 1, Cursor: first.NextCursor}).Items), []string{"1"})
}

func testFillPseudonyms(t *testing.T, backend Backend) {
	s := Open(t, backend)
	record(t, s, created("o-a", "kf1", t0), closed("o-a", "kf1", t0.Add(time.Minute)), closed("o-b", "kf1", t0))
	// Stored under an older key: it keeps it.
	old := closed("o-c", "kf1", t0)
	old.Pseudonym = "older-key-pseudonym"
	record(t, s, old)
	upsert(t, s,
		post(1, pseudonymOf("o-a"), t0.Add(time.Hour), "a"),
		post(2, pseudonymOf("o-b"), t0.Add(time.Hour), "b"),
		post(3, "older-key-pseudonym", t0.Add(time.Hour), "c under the older key"),
		post(4, pseudonymOf("o-c"), t0.Add(time.Hour), "c under the new key"),
	)
	assertNotLinked(t, onlyPost(t, s, "1"))
	assertLinked(t, onlyPost(t, s, "3"), "kf1", t0)

	var asked []string
	var mu sync.Mutex
	fn := func(o string) string {
		mu.Lock()
		asked = append(asked, o)
		mu.Unlock()
		return pseudonymOf(o)
	}
	n, err := s.FillPseudonyms(ctx(t), fn, 1)
	if err != nil || n != 2 {
		t.Fatalf("FillPseudonyms = %d, %v; want 2 customers (o-a, o-b)", n, err)
	}
	slices.Sort(asked)
	assertIDs(t, "customers computed", asked, []string{"o-a", "o-b"})
	assertLinked(t, onlyPost(t, s, "1"), "kf1", t0.Add(time.Minute))
	assertLinked(t, onlyPost(t, s, "2"), "kf1", t0)
	assertLinked(t, onlyPost(t, s, "3"), "kf1", t0)
	assertNotLinked(t, onlyPost(t, s, "4"))
	if n, err := s.FillPseudonyms(ctx(t), fn, 0); err != nil || n != 0 {
		t.Errorf("a second fill = %d, %v; want nothing left", n, err)
	}
	// New facts without a pseudonym are filled by the next run only.
	record(t, s, closed("o-d", "kf1", t0))
	if n, err := s.FillPseudonyms(ctx(t), fn, 0); err != nil || n != 1 {
		t.Errorf("fill after a new fact = %d, %v; want 1", n, err)
	}
}

func testSessionsWithLinkedPosts(t *testing.T, backend Backend) {
	s := Open(t, backend)
	upsert(t, s,
		post(1, "o-a", t0.Add(-time.Hour), "before any session"),
		post(2, "o-a", t0.Add(time.Hour), "after the first"),
		post(3, "o-a", t0.Add(90*time.Minute), "also after the first"),
		post(4, "o-a", t0.Add(4*time.Hour), "after the second"),
		post(5, "o-b", t0.Add(2*time.Hour), "b's feedback"),
	)
	record(t, s,
		created("o-a", "kf1", t0), closed("o-a", "kf1", t0.Add(10*time.Minute)),
		created("o-a", "kf2", t0.Add(2*time.Hour)), closed("o-a", "kf2", t0.Add(3*time.Hour)),
		closed("o-b", "kf1", t0.Add(100*time.Minute)),
		created("o-c", "kf3", t0), // still open: not listed
	)
	page := listSessions(t, s, store.SessionQuery{})
	type row struct {
		openid, agent string
		closedAt      time.Time
		startedAt     time.Time
		duration      int64
		posts         []string
	}
	want := []row{
		{"o-a", "kf2", t0.Add(3 * time.Hour), t0.Add(2 * time.Hour), 3600, []string{"4"}},
		{"o-b", "kf1", t0.Add(100 * time.Minute), time.Time{}, 0, []string{"5"}},
		{"o-a", "kf1", t0.Add(10 * time.Minute), t0, 600, []string{"3", "2"}},
	}
	if len(page.Items) != len(want) {
		t.Fatalf("%d sessions, want %d: %+v", len(page.Items), len(want), page.Items)
	}
	for i, w := range want {
		g := page.Items[i]
		if g.OpenID != w.openid || g.KfAccount != w.agent || !g.ClosedAt.Equal(w.closedAt) ||
			!g.StartedAt.Equal(w.startedAt) || g.DurationSeconds != w.duration {
			t.Errorf("session %d = %s/%s started %v closed %v (%ds), want %s/%s started %v closed %v (%ds)", i,
				g.OpenID, g.KfAccount, g.StartedAt, g.ClosedAt, g.DurationSeconds,
				w.openid, w.agent, w.startedAt, w.closedAt, w.duration)
		}
		assertIDs(t, fmt.Sprintf("session %d posts", i), rawIDs(g.Posts), w.posts)
	}
	if len(page.Items) > 0 && len(page.Items[0].Posts) == 1 {
		assertSamePost(t, page.Items[0].Posts[0], post(4, "o-a", t0.Add(4*time.Hour), "after the second"))
	}
}

func testSessionStart(t *testing.T, backend Backend) {
	for _, c := range []struct {
		name  string
		facts []store.SessionFact
		// the session closed at closedAt must start at want (zero: unknown)
		closedAt, want time.Time
	}{
		{"a transfer keeps the first agent's created fact",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf2", t0.Add(5*time.Minute))},
			t0.Add(5 * time.Minute), t0},
		{"without a created fact the start is unknown",
			[]store.SessionFact{closed("o", "kf1", t0)}, t0, time.Time{}},
		{"a created fact before the previous close belongs to that session",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf1", t0.Add(time.Minute)), closed("o", "kf1", t0.Add(time.Hour))},
			t0.Add(time.Hour), time.Time{}},
		{"the next session may start in the second the previous one closed",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf1", t0.Add(time.Minute)),
				created("o", "kf2", t0.Add(time.Minute)), closed("o", "kf2", t0.Add(time.Hour))},
			t0.Add(time.Hour), t0.Add(time.Minute)},
		{"a created fact in the second of the close starts the next session, not this one",
			[]store.SessionFact{created("o", "kf1", t0), closed("o", "kf1", t0.Add(time.Minute)),
				created("o", "kf2", t0.Add(time.Minute))},
			t0.Add(time.Minute), t0},
		{"the latest of several created facts starts the session",
			[]store.SessionFact{created("o", "kf1", t0), created("o", "kf2", t0.Add(time.Minute)), closed("o", "kf2", t0.Add(time.Hour))},
			t0.Add(time.Hour), t0.Add(time.Minute)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Open(t, backend)
			// Reversed: facts arrive in any order.
			facts := slices.Clone(c.facts)
			slices.Reverse(facts)
			record(t, s, facts...)
			for _, sess := range listSessions(t, s, store.SessionQuery{}).Items {
				if sess.ClosedAt.Equal(c.closedAt) {
					if !sess.StartedAt.Equal(c.want) {
						t.Errorf("started_at = %v, want %v", sess.StartedAt, c.want)
					}
					return
				}
			}
			t.Errorf("no session closed at %v", c.closedAt)
		})
	}
}

func testSessionFactIdempotent(t *testing.T, backend Backend) {
	s := Open(t, backend)
	fact := closed("o", "kf1", t0)
	record(t, s, fact, fact)
	record(t, s, fact)
	record(t, s, store.SessionClosedFact(events.SessionClosed{
		WeChatSource: events.WeChatSource{OpenID: "o", CreateTime: t0.Unix()},
		KfAccount:    "kf1",
	}))
	if got := listSessions(t, s, store.SessionQuery{}).Items; len(got) != 1 {
		t.Errorf("%d sessions after recording one fact four times, want 1", len(got))
	}
	// A different agent in the same second is a different fact.
	record(t, s, closed("o", "kf2", t0))
	if got := listSessions(t, s, store.SessionQuery{}).Items; len(got) != 2 {
		t.Errorf("%d sessions, want 2", len(got))
	}
}

func testInvalidSessionFact(t *testing.T, backend Backend) {
	s := Open(t, backend)
	for _, c := range []struct {
		name string
		fact store.SessionFact
	}{
		{"unknown kind", store.SessionFact{Kind: "switched", OpenID: "o", KfAccount: "kf", At: t0}},
		{"no openid", closed("", "kf", t0)},
		{"no time", closed("o", "kf", time.Time{})},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := s.RecordSessions(ctx(t), []store.SessionFact{closed("valid", "kf", t0), c.fact})
			if !errors.Is(err, store.ErrInvalidSessionFact) {
				t.Fatalf("error = %v, want ErrInvalidSessionFact", err)
			}
			if got := listSessions(t, s, store.SessionQuery{}).Items; len(got) != 0 {
				t.Errorf("the valid fact of a rejected batch was written")
			}
		})
	}
}

func testSessionFiltersAndPagination(t *testing.T, backend Backend) {
	s := Open(t, backend)
	var facts []store.SessionFact
	for i := range 9 {
		openid := []string{"o-a", "o-b"}[i%2]
		agent := []string{"kf1", "kf2", "kf3"}[i%3]
		// Pairs share a closed_at, so the id must break ties.
		facts = append(facts, closed(openid, agent, t0.Add(time.Duration(i/2)*time.Hour)))
	}
	record(t, s, facts...)
	count := func(q store.SessionQuery) int { return len(listSessions(t, s, q).Items) }
	for _, c := range []struct {
		name string
		q    store.SessionQuery
		want int
	}{
		{"no filter", store.SessionQuery{}, 9},
		{"openid", store.SessionQuery{OpenID: "o-a"}, 5},
		{"kf_account", store.SessionQuery{KfAccount: "kf2"}, 3},
		{"openid and kf_account", store.SessionQuery{OpenID: "o-b", KfAccount: "kf2"}, 2},
		{"from is inclusive", store.SessionQuery{From: t0.Add(3 * time.Hour)}, 3},
		{"to is exclusive", store.SessionQuery{To: t0.Add(time.Hour)}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := count(c.q); got != c.want {
				t.Errorf("%d sessions, want %d", got, c.want)
			}
		})
	}
	t.Run("pagination visits every session once, newest first", func(t *testing.T) {
		var walked []store.Session
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("pagination does not end")
			}
			page := listSessions(t, s, store.SessionQuery{Limit: 2, Cursor: cursor})
			walked = append(walked, page.Items...)
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if len(walked) != 9 {
			t.Fatalf("walked %d sessions, want 9", len(walked))
		}
		type key struct {
			openid, agent string
			at            int64
		}
		seen := map[key]bool{}
		for i, sess := range walked {
			k := key{sess.OpenID, sess.KfAccount, sess.ClosedAt.UnixMicro()}
			if seen[k] {
				t.Errorf("session %+v seen twice", k)
			}
			seen[k] = true
			if i > 0 && sess.ClosedAt.After(walked[i-1].ClosedAt) {
				t.Errorf("session %d closed after session %d", i, i-1)
			}
		}
	})
}

func testReopen(t *testing.T, backend Backend) {
	open := backend(t)
	var applied []int
	s, err := open(store.OnMigrationApplied(func(v int, _ string) { applied = append(applied, v) }))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if len(applied) == 0 || applied[0] != 1 {
		t.Fatalf("first open applied migrations %v, want 1…n", applied)
	}
	upsert(t, s, post(1, "o", t0.Add(time.Minute), "kept"))
	record(t, s, closed("o", "kf1", t0))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	var reapplied []int
	s2 := mustOpen(t, open, store.OnMigrationApplied(func(v int, _ string) { reapplied = append(reapplied, v) }))
	if len(reapplied) != 0 {
		t.Errorf("reopening applied migrations %v again", reapplied)
	}
	assertLinked(t, onlyPost(t, s2, "1"), "kf1", t0)
}

func testConcurrentOpen(t *testing.T, backend Backend) {
	open := backend(t)
	var mu sync.Mutex
	applied := map[int]int{}
	count := store.OnMigrationApplied(func(v int, _ string) {
		mu.Lock()
		applied[v]++
		mu.Unlock()
	})
	var wg sync.WaitGroup
	stores := make([]store.Store, 3)
	errs := make([]error, 3)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = open(count) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	// Each version from 1 up was applied by exactly one of the three.
	if len(applied) == 0 {
		t.Fatal("no open applied the migrations")
	}
	for v := 1; v <= len(applied); v++ {
		if applied[v] != 1 {
			t.Errorf("migration %d applied %d times, want once (all: %v)", v, applied[v], applied)
		}
	}
	upsert(t, stores[0], post(1, "o", t0, "x"))
	for i, st := range stores {
		if got := len(listPosts(t, st, store.PostQuery{}).Items); got != 1 {
			t.Errorf("store %d sees %d posts, want 1", i, got)
		}
	}
}

func testPing(t *testing.T, backend Backend) {
	open := backend(t)
	s, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := s.Ping(ctx(t)); err != nil {
		t.Errorf("Ping on an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Errorf("Ping on a closed store succeeded")
	}
}
