package tucaotest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

var start = time.Unix(1539853390, 0) // 2018-10-18 17:03:10 in Shanghai

type answer struct {
	httpStatus int
	header     http.Header
	body       map[string]json.RawMessage
	raw        []byte
}

func (a answer) status(t *testing.T) int {
	t.Helper()
	var n int
	if err := json.Unmarshal(a.body["status"], &n); err != nil {
		t.Fatalf("status %s: %v", a.body["status"], err)
	}
	return n
}

// get sends a request the way a client would; ts "" means the clock's time,
// sig "" the right signature for ts, "-" leaves a header out.
func get(t *testing.T, s *Server, path, ts, sig string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ts == "" {
		ts = strconv.FormatInt(s.clock.Now().Unix(), 10)
	}
	if sig == "" {
		sig = tucao.Sign(ts, s.Secret())
	}
	if ts != "-" {
		req.Header.Set("Timestamp", ts)
	}
	if sig != "-" {
		req.Header.Set("Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{httpStatus: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func newServer(t *testing.T, opts Options) (*Server, *tucao.FakeClock) {
	t.Helper()
	clock := tucao.NewFakeClock(start)
	opts.Clock = clock
	s := New(opts)
	t.Cleanup(s.Close)
	return s, clock
}

func TestRequestsAreCheckedLikeTucao(t *testing.T) {
	s, clock := newServer(t, Options{})
	now := clock.Now().Unix()
	stamp := func(offset int64) string { return strconv.FormatInt(now+offset, 10) }
	tests := []struct {
		name       string
		path       string
		ts, sig    string
		wantHTTP   int
		wantStatus int
	}{
		{"a signed request is answered", "/api/v1/1234/posts", "", "", 200, tucao.StatusOK},
		{"an upper-case signature is accepted", "/api/v1/1234/posts", stamp(0), strings.ToUpper(tucao.Sign(stamp(0), DefaultSecret)), 200, tucao.StatusOK},
		{"a timestamp 300 s old is still accepted", "/api/v1/1234/posts", stamp(-300), "", 200, tucao.StatusOK},
		{"a timestamp 301 s old is stale", "/api/v1/1234/posts", stamp(-301), "", 401, tucao.StatusStaleTimestamp},
		{"a timestamp 301 s ahead is stale", "/api/v1/1234/posts", stamp(301), "", 401, tucao.StatusStaleTimestamp},
		{"a missing timestamp is refused", "/api/v1/1234/posts", "-", "0123456789abcdef0123456789abcdef", 401, tucao.StatusMissingAuth},
		{"a millisecond timestamp is refused", "/api/v1/1234/posts", stamp(0) + "000", "", 401, tucao.StatusMissingAuth},
		{"a missing signature is refused", "/api/v1/1234/posts", "", "-", 401, tucao.StatusMissingAuth},
		{"a signature with another secret is refused", "/api/v1/1234/posts", stamp(0), tucao.Sign(stamp(0), "other"), 401, tucao.StatusBadSignature},
		{"a signature of another timestamp is refused", "/api/v1/1234/posts", stamp(0), tucao.Sign(stamp(-1), DefaultSecret), 401, tucao.StatusBadSignature},
		{"another product is not found", "/api/v1/4321/posts", "", "", 404, tucao.StatusUnknownProduct},
		{"count 100 is allowed", "/api/v1/1234/posts?count=100", "", "", 200, tucao.StatusOK},
		{"count 101 is refused", "/api/v1/1234/posts?count=101", "", "", 400, tucao.StatusInvalidParameter},
		{"count 0 is refused", "/api/v1/1234/posts?count=0", "", "", 400, tucao.StatusInvalidParameter},
		{"a max_id that is not an id is refused", "/api/v1/1234/posts?max_id=abc", "", "", 400, tucao.StatusInvalidParameter},
		{"a from that is not YYYYMMDD is refused", "/api/v1/1234/posts?from=2018-01-23", "", "", 400, tucao.StatusInvalidParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := get(t, s, tt.path, tt.ts, tt.sig)
			if a.httpStatus != tt.wantHTTP || a.status(t) != tt.wantStatus {
				t.Errorf("answer HTTP %d status %d (%s), want HTTP %d status %d", a.httpStatus, a.status(t), a.raw, tt.wantHTTP, tt.wantStatus)
			}
			if tt.wantStatus != tucao.StatusOK {
				var msg string
				if err := json.Unmarshal(a.body["message"], &msg); err != nil || msg == "" {
					t.Errorf("error answer has no message: %s", a.raw)
				}
			}
		})
	}
}

func TestAnswerIsShapedLikeTheSeed(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.Generate(5, 3)
	a := get(t, s, "/api/v1/1234/posts?count=2", "", "")
	if a.httpStatus != 200 || a.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("HTTP %d %q", a.httpStatus, a.header.Get("Content-Type"))
	}
	for _, key := range []string{"status", "message", "pagination", "object", "data"} {
		if _, ok := a.body[key]; !ok {
			t.Errorf("answer lacks %q: %s", key, a.raw)
		}
	}
	if string(a.body["object"]) != `"post"` || string(a.body["message"]) != "null" {
		t.Errorf("object %s, message %s", a.body["object"], a.body["message"])
	}
	var pg map[string]json.RawMessage
	if err := json.Unmarshal(a.body["pagination"], &pg); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"per_page", "next_page_url", "from", "to", "total"} {
		if _, ok := pg[key]; !ok {
			t.Errorf("pagination lacks %q", key)
		}
	}
	var data []map[string]json.RawMessage
	if err := json.Unmarshal(a.body["data"], &data); err != nil {
		t.Fatal(err)
	}
	seedKeys := []string{"id", "has_admin_reply", "avatar_url", "nick_name", "content", "openid", "user_id", "user",
		"is_admin", "is_top", "is_good", "is_spam", "is_todo", "is_locked", "is_hidden", "is_notice", "is_liked",
		"is_abuse", "reply_count", "like_count", "images_count", "created_at", "time", "updated_at", "last_reply_at",
		"images", "replies", "extra", "faq_id", "replies_all", "categories", "field_values"}
	for _, key := range seedKeys {
		if _, ok := data[0][key]; !ok {
			t.Errorf("post lacks %q", key)
		}
	}
	if id := string(data[0]["id"]); !strings.HasPrefix(id, `"`) || len(id) != 20 {
		t.Errorf("id %s is not an 18-digit string", id)
	}
	posts := s.Posts()
	wantNext := fmt.Sprintf(`"/api/v1/1234/posts?max_id=%s&count=2"`, posts[2].ID)
	if string(pg["next_page_url"]) != wantNext {
		t.Errorf("next_page_url %s, want %s (the next older post, count kept)", pg["next_page_url"], wantNext)
	}
	if string(pg["total"]) != "null" || string(pg["from"]) != "null" {
		t.Errorf("total %s and from %s without a window, want null", pg["total"], pg["from"])
	}
}

func TestMaxIDIsInclusiveAndLastPageHasNoNext(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.Generate(3, 4)
	posts := s.Posts()
	a := get(t, s, "/api/v1/1234/posts?max_id="+posts[1].ID, "", "")
	var page struct {
		Pagination struct {
			NextPageURL *string `json:"next_page_url"`
		} `json:"pagination"`
		Data []tucao.Post `json:"data"`
	}
	if err := json.Unmarshal(a.raw, &page); err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, p := range page.Data {
		got = append(got, p.ID)
	}
	if want := []string{posts[1].ID, posts[2].ID}; !slices.Equal(got, want) {
		t.Errorf("max_id page = %v, want %v", got, want)
	}
	if page.Pagination.NextPageURL != nil {
		t.Errorf("last page next_page_url = %q, want null", *page.Pagination.NextPageURL)
	}
}

// Tucao's API documentation: "from=20180123&to=20180124 可以获取,2018年1月23日全日的数据" —
// to is exclusive, so that window is January 23rd (Asia/Shanghai) alone,
// and a window whose to is not after its from is empty.
func TestFromToIsTheSeedsExclusiveWindow(t *testing.T) {
	s, _ := newServer(t, Options{})
	cst := time.FixedZone("CST", 8*3600)
	var jan23 []string
	for _, at := range []time.Time{
		time.Date(2018, 1, 22, 23, 59, 59, 0, cst),
		time.Date(2018, 1, 23, 0, 0, 0, 0, cst),
		time.Date(2018, 1, 23, 12, 0, 0, 0, cst),
		time.Date(2018, 1, 23, 23, 59, 59, 0, cst),
		time.Date(2018, 1, 24, 0, 0, 0, 0, cst),
		time.Date(2018, 1, 24, 9, 0, 0, 0, cst),
	} {
		p := s.AddPost(PostInput{Content: "反馈", CreatedAt: at})
		if at.Day() == 23 {
			jan23 = append([]string{p.ID}, jan23...)
		}
	}
	ids := func(query string) []string {
		t.Helper()
		a := get(t, s, "/api/v1/1234/posts?"+query, "", "")
		var page struct {
			Pagination struct {
				Total *int `json:"total"`
			} `json:"pagination"`
			Data []tucao.Post `json:"data"`
		}
		if err := json.Unmarshal(a.raw, &page); err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, p := range page.Data {
			got = append(got, p.ID)
		}
		if page.Pagination.Total == nil || *page.Pagination.Total != len(got) {
			t.Errorf("%s: total %v for %d posts", query, page.Pagination.Total, len(got))
		}
		return got
	}
	if got := ids("from=20180123&to=20180124"); !slices.Equal(got, jan23) {
		t.Errorf("the documented window = %v, want January 23rd alone %v", got, jan23)
	}
	if got := ids("from=20180123&to=20180123"); len(got) != 0 {
		t.Errorf("from=to selects %v, want nothing (to is exclusive)", got)
	}
	if got := ids("to=20180123"); len(got) != 1 {
		t.Errorf("to=20180123 selects %d posts, want the one of January 22nd", len(got))
	}
}

func TestRateLimitIsASlidingWindow(t *testing.T) {
	s, clock := newServer(t, Options{RateLimit: 3})
	ok := func(want bool, when string) {
		t.Helper()
		a := get(t, s, "/api/v1/1234/posts", "", "")
		if got := a.httpStatus == 200; got != want {
			t.Fatalf("%s: HTTP %d %s", when, a.httpStatus, a.raw)
		}
		if !want {
			if a.httpStatus != 429 || a.status(t) != tucao.StatusRateLimited {
				t.Fatalf("%s: HTTP %d status %d, want 429 %d", when, a.httpStatus, a.status(t), tucao.StatusRateLimited)
			}
			if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
				t.Errorf("%s: Retry-After %q", when, a.header.Get("Retry-After"))
			}
		}
	}
	ok(true, "t=0 first")
	clock.Advance(30 * time.Second)
	ok(true, "t=30 second")
	ok(true, "t=30 third")
	ok(false, "t=30 fourth is over the budget")
	clock.Advance(29 * time.Second)
	ok(false, "t=59 the first is still in the window")
	clock.Advance(time.Second)
	ok(true, "t=60 the first left the window")
	ok(false, "t=60 the t=30 requests are still in the window")
	clock.Advance(30 * time.Second)
	ok(true, "t=90 the t=30 requests left")

	s.SetRateLimit(0)
	for i := range 10 {
		ok(true, fmt.Sprintf("limit off, request %d", i))
	}
}

func TestFaultsComeFirstAndInOrder(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.FailNext(1, FaultServerError)
	s.FailNext(1, FaultRateLimited)
	s.FailNext(1, FaultMalformedJSON)
	if a := get(t, s, "/api/v1/1234/posts", "-", "-"); a.httpStatus != 500 || a.status(t) != tucao.StatusInternalError {
		t.Errorf("first: HTTP %d %s", a.httpStatus, a.raw)
	}
	if a := get(t, s, "/api/v1/1234/posts", "", ""); a.httpStatus != 429 || a.header.Get("Retry-After") != "1" {
		t.Errorf("second: HTTP %d %s", a.httpStatus, a.raw)
	}
	if a := get(t, s, "/api/v1/1234/posts", "", ""); a.httpStatus != 200 || json.Valid(a.raw) {
		t.Errorf("third: HTTP %d, valid JSON %v", a.httpStatus, json.Valid(a.raw))
	}
	if a := get(t, s, "/api/v1/1234/posts", "", ""); a.httpStatus != 200 || !json.Valid(a.raw) {
		t.Errorf("fourth: HTTP %d %s", a.httpStatus, a.raw)
	}
	if n := s.RequestCount(); n != 4 {
		t.Errorf("RequestCount = %d, want 4", n)
	}
}

func TestSlowAnswerEndsWhenTheClientGivesUp(t *testing.T) {
	s, _ := newServer(t, Options{SlowDelay: time.Hour})
	s.FailNext(1, FaultSlow)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/api/v1/1234/posts", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("slow answer arrived")
	}
	s.Close() // must not wait an hour
}

func TestRepliesAndFlagsUpdateThePost(t *testing.T) {
	s, clock := newServer(t, Options{})
	p := s.AddPost(PostInput{Content: "退款没到账", OpenID: "oUser1"})
	if p.ReplyCount != 0 || p.HasAdminReply || p.LastReplyAt != "1970-01-01 00:00:00" || p.CreatedAt != p.UpdatedAt {
		t.Fatalf("new post = %+v", p)
	}
	clock.Advance(5 * time.Minute)
	got, err := s.AddReplyFrom(p.ID, ReplyInput{Content: "还没到", OpenID: "oUser1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.ReplyCount != 1 || got.HasAdminReply {
		t.Errorf("after a user reply: reply_count %d, has_admin_reply %v", got.ReplyCount, got.HasAdminReply)
	}
	clock.Advance(5 * time.Minute)
	got, err = s.AddReply(p.ID, "已处理")
	if err != nil {
		t.Fatal(err)
	}
	want := tucao.FormatTime(clock.Now())
	if got.ReplyCount != 2 || !got.HasAdminReply || got.UpdatedAt != want || got.LastReplyAt != want {
		t.Errorf("after an admin reply: %+v", got)
	}
	var replies []Reply
	if err := json.Unmarshal(got.Replies, &replies); err != nil || len(replies) != 2 || replies[1].Content != "已处理" || !replies[1].IsAdmin {
		t.Errorf("replies = %s (%v)", got.Replies, err)
	}
	if string(got.RepliesAll) != string(got.Replies) {
		t.Errorf("replies_all %s differs from replies %s", got.RepliesAll, got.Replies)
	}

	clock.Advance(time.Minute)
	if err := s.SetFlag(p.ID, FlagTodo, true); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Post(p.ID)
	if !after.IsTodo || after.UpdatedAt != tucao.FormatTime(clock.Now()) {
		t.Errorf("after SetFlag: is_todo %v, updated_at %s", after.IsTodo, after.UpdatedAt)
	}
	if err := s.SetFlag(p.ID, Flag("is_bogus"), true); err == nil {
		t.Error("SetFlag accepted an unknown flag")
	}
	if _, err := s.AddReply("1", "x"); err == nil {
		t.Error("AddReply accepted an unknown post")
	}
}

func TestIDsIncreaseAndStartWithTheCreationTime(t *testing.T) {
	s, _ := newServer(t, Options{})
	posts := s.Generate(200, 5)
	for i, p := range posts {
		created, err := p.CreatedTime()
		if err != nil {
			t.Fatal(err)
		}
		if len(p.ID) != 18 {
			t.Fatalf("post %d id %s is not 18 digits", i, p.ID)
		}
		if i > 0 && p.IDInt() <= posts[i-1].IDInt() {
			t.Fatalf("post %d id %s not above %s", i, p.ID, posts[i-1].ID)
		}
		if prefix := strconv.FormatInt(created.Unix(), 10); !strings.HasPrefix(p.ID, prefix) {
			t.Errorf("post %d id %s does not start with its creation time %s", i, p.ID, prefix)
		}
	}
}

func TestGenerateIsDeterministicAndRealistic(t *testing.T) {
	a, _ := newServer(t, Options{})
	b, _ := newServer(t, Options{})
	pa, pb := a.Generate(120, 42), b.Generate(120, 42)
	other, _ := newServer(t, Options{})
	po := other.Generate(120, 43)
	same, differs, replied, days := true, false, 0, map[string]bool{}
	for i := range pa {
		if pa[i].Content != pb[i].Content || pa[i].OpenID != pb[i].OpenID || pa[i].CreatedAt != pb[i].CreatedAt || pa[i].ReplyCount != pb[i].ReplyCount {
			same = false
		}
		if pa[i].Content != po[i].Content || pa[i].OpenID != po[i].OpenID {
			differs = true
		}
		if pa[i].ReplyCount > 0 {
			replied++
		}
		if len(pa[i].OpenID) != 28 || pa[i].OpenID[0] != 'o' {
			t.Errorf("openid %q does not look like a WeChat openid", pa[i].OpenID)
		}
		days[pa[i].CreatedAt[:10]] = true
	}
	if !same {
		t.Error("the same seed gave different posts")
	}
	if !differs {
		t.Error("another seed gave the same posts")
	}
	if replied == 0 || replied == len(pa) {
		t.Errorf("%d of %d posts replied; want some, not all", replied, len(pa))
	}
	if len(days) < 3 {
		t.Errorf("posts span %d days, want several for from/to tests", len(days))
	}
}

func TestPushWebhookSendsTheTucaoShape(t *testing.T) {
	s, _ := newServer(t, Options{})
	p := s.AddPost(PostInput{Content: "闪退了", OpenID: "oUser2"})
	if _, err := s.AddReply(p.ID, "收到"); err != nil {
		t.Fatal(err)
	}
	var got []WebhookEvent
	status := http.StatusOK
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev WebhookEvent
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with %q", r.Method, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			t.Errorf("decode webhook: %v", err)
		}
		got = append(got, ev)
		w.WriteHeader(status)
	}))
	defer recv.Close()

	if err := s.PushWebhook(recv.URL, EventPostCreated, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.PushWebhook(recv.URL, EventReplyCreated, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.PushWebhook(recv.URL, EventWebhookTest, ""); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d webhooks received", len(got))
	}
	if got[0].Type != EventPostCreated || got[0].Payload.Post == nil || got[0].Payload.Post.ID != p.ID || got[0].ID == "" || got[0].CreatedAt == "" {
		t.Errorf("post.created = %+v", got[0])
	}
	if got[1].Payload.Reply == nil || got[1].Payload.Reply.Content != "收到" || got[0].ID == got[1].ID {
		t.Errorf("reply.created = %+v", got[1])
	}
	if got[2].Type != EventWebhookTest || got[2].Payload.Post != nil {
		t.Errorf("webhook.test = %+v", got[2])
	}
	if err := s.PushWebhook(recv.URL, EventPostCreated, "404"); err == nil {
		t.Error("webhook for an unknown post was sent")
	}
	status = http.StatusInternalServerError
	if err := s.PushWebhook(recv.URL, EventPostCreated, p.ID); err == nil {
		t.Error("a 500 from the receiver is not an error")
	}
}
