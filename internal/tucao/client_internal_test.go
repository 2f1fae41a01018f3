package tucao

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a scripted server: it answers with respond, without a Date
// header, and records every request it sees.
type recorder struct {
	mu       sync.Mutex
	requests []*http.Request
	respond  func(w http.ResponseWriter, r *http.Request, n int)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.requests = append(rec.requests, r.Clone(context.Background()))
	n := len(rec.requests)
	rec.mu.Unlock()
	// The scripted answers tell no time: net/http would stamp them with
	// the real clock, which the clients here (on a fake clock in 2018)
	// would take for a skew of years and correct. skew_test.go covers Date.
	w.Header()["Date"] = nil
	rec.respond(w, r, n)
}

func (rec *recorder) seen() []*http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*http.Request(nil), rec.requests...)
}

func startRecorder(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, n int)) (*recorder, *httptest.Server) {
	t.Helper()
	rec := &recorder{respond: respond}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, srv
}

func newTestClient(t *testing.T, baseURL string, modify func(*Config)) (*Client, *FakeClock) {
	t.Helper()
	clock := NewFakeClock(time.Unix(1539854769, 0))
	clock.SetAutoAdvance(true)
	cfg := Config{BaseURL: baseURL, ProductID: "1234", Secret: "tucao123", Clock: clock}
	if modify != nil {
		modify(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, clock
}

func pageJSON(next string, ids ...int64) string {
	var posts []string
	for _, id := range ids {
		posts = append(posts, fmt.Sprintf(`{"id":"%d","content":"c%d"}`, id, id))
	}
	nextJSON := "null"
	if next != "" {
		nextJSON = strconv.Quote(next)
	}
	return fmt.Sprintf(`{"status":0,"message":null,"pagination":{"per_page":%d,"next_page_url":%s},"object":"post","data":[%s]}`,
		len(ids), nextJSON, strings.Join(posts, ","))
}

func TestRequestsAreSignedAfreshEachTime(t *testing.T) {
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			fmt.Fprint(w, pageJSON("/api/v1/1234/posts?max_id=5", 6))
			return
		}
		fmt.Fprint(w, pageJSON("", 5))
	})
	c, clock := newTestClient(t, srv.URL, nil)
	page, err := c.ListPosts(context.Background(), ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(90 * time.Second)
	if _, err := c.NextPage(context.Background(), page.NextPageURL); err != nil {
		t.Fatal(err)
	}
	reqs := rec.seen()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		ts := r.Header.Get("Timestamp")
		if len(ts) != 10 {
			t.Errorf("request %d: Timestamp %q is not 10 digits", i, ts)
		}
		if got, want := r.Header.Get("Signature"), Sign(ts, "tucao123"); got != want {
			t.Errorf("request %d: Signature %q, want %q", i, got, want)
		}
		if r.URL.Path != "/api/v1/1234/posts" {
			t.Errorf("request %d: path %q", i, r.URL.Path)
		}
	}
	if reqs[0].Header.Get("Timestamp") == reqs[1].Header.Get("Timestamp") {
		t.Error("the second page reused the first page's timestamp")
	}
	if got := reqs[1].Header.Get("Timestamp"); got != strconv.FormatInt(clock.Now().Unix(), 10) {
		t.Errorf("Timestamp %s is not the clock's time %d", got, clock.Now().Unix())
	}
}

func TestListOptionsAreSentAndChecked(t *testing.T) {
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) { fmt.Fprint(w, pageJSON("")) })
	c, _ := newTestClient(t, srv.URL, nil)
	if _, err := c.ListPosts(context.Background(), ListOptions{Count: 30, MaxID: "153985337910779971", From: "20180123", To: "20180124"}); err != nil {
		t.Fatal(err)
	}
	q := rec.seen()[0].URL.Query()
	if q.Get("count") != "30" || q.Get("max_id") != "153985337910779971" || q.Get("from") != "20180123" || q.Get("to") != "20180124" {
		t.Errorf("query = %v", q)
	}
	for name, opt := range map[string]ListOptions{
		"count above 100":     {Count: 101},
		"negative count":      {Count: -1},
		"max_id not a number": {MaxID: "abc"},
		"from not YYYYMMDD":   {From: "2018-01-23"},
		"to before from":      {From: "20180124", To: "20180123"},
		"to equal to from":    {From: "20180123", To: "20180123"}, // exclusive to: an empty window
		"to not a real day":   {To: "20180230"},
	} {
		if _, err := c.ListPosts(context.Background(), opt); err == nil {
			t.Errorf("%s: ListPosts accepted %+v", name, opt)
		}
	}
	if n := len(rec.seen()); n != 1 {
		t.Errorf("invalid options reached the server: %d requests", n)
	}
}

func TestNextPageStaysOnTheConfiguredHost(t *testing.T) {
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) { fmt.Fprint(w, pageJSON("")) })
	c, _ := newTestClient(t, srv.URL, nil)
	for _, next := range []string{
		"http://evil.example/api/v1/1234/posts?max_id=1",
		"//evil.example/api/v1/1234/posts?max_id=1",
		"api/v1/1234/posts?max_id=1",
	} {
		if _, err := c.NextPage(context.Background(), next); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("NextPage(%q) = %v, want ErrMalformedResponse", next, err)
		}
	}
	if n := len(rec.seen()); n != 0 {
		t.Errorf("%d requests sent for foreign next_page_urls", n)
	}
	if _, err := c.NextPage(context.Background(), srv.URL+"/api/v1/1234/posts?max_id=1"); err != nil {
		t.Errorf("absolute next_page_url on our host: %v", err)
	}
}

func TestBaseURLPathPrefixIsKept(t *testing.T) {
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			fmt.Fprint(w, pageJSON("/api/v1/1234/posts?max_id=5", 6))
			return
		}
		fmt.Fprint(w, pageJSON("", 5))
	})
	c, _ := newTestClient(t, srv.URL+"/tucao/", nil)
	var ids []string
	err := c.Iterate(context.Background(), ListOptions{}, func(p Post) (bool, error) { ids = append(ids, p.ID); return true, nil })
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rec.seen() {
		if r.URL.Path != "/tucao/api/v1/1234/posts" {
			t.Errorf("request %d path %q, want the /tucao prefix", i, r.URL.Path)
		}
	}
	if strings.Join(ids, ",") != "6,5" {
		t.Errorf("ids = %v", ids)
	}
}

// A server whose max_id is inclusive of the previous page's last post, and
// whose next_page_url forgets count and the window.
func TestIterateSkipsBoundaryDuplicatesAndCarriesOptions(t *testing.T) {
	all := []int64{10, 9, 8, 7, 6, 5, 4}
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
		q := r.URL.Query()
		count, _ := strconv.Atoi(q.Get("count"))
		if count == 0 {
			count = 20
		}
		maxID, _ := strconv.ParseInt(q.Get("max_id"), 10, 64)
		var page []int64
		for _, id := range all {
			if (maxID == 0 || id <= maxID) && len(page) < count {
				page = append(page, id)
			}
		}
		next := ""
		if len(page) == count && page[len(page)-1] != all[len(all)-1] {
			next = fmt.Sprintf("/api/v1/1234/posts?max_id=%d", page[len(page)-1]) // inclusive: repeats the last post
		}
		fmt.Fprint(w, pageJSON(next, page...))
	})
	c, _ := newTestClient(t, srv.URL, nil)
	var got []string
	err := c.Iterate(context.Background(), ListOptions{Count: 3, From: "20180101"}, func(p Post) (bool, error) {
		got = append(got, p.ID)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "10,9,8,7,6,5,4" {
		t.Errorf("posts = %v, want each once, newest first", got)
	}
	for i, r := range rec.seen() {
		if q := r.URL.Query(); q.Get("count") != "3" || q.Get("from") != "20180101" {
			t.Errorf("request %d lost the options: %v", i, q)
		}
	}
}

func TestIterateStopsWhenNextPageRepeats(t *testing.T) {
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
		fmt.Fprint(w, pageJSON("/api/v1/1234/posts?max_id=9", 9))
	})
	c, _ := newTestClient(t, srv.URL, nil)
	calls := 0
	err := c.Iterate(context.Background(), ListOptions{}, func(Post) (bool, error) { calls++; return true, nil })
	if !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("Iterate = %v, want ErrMalformedResponse", err)
	}
	if n := len(rec.seen()); n != 2 || calls != 1 {
		t.Errorf("%d requests and %d posts, want 2 and 1", n, calls)
	}
}

func TestIterateReturnsTheCallbackError(t *testing.T) {
	_, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) { fmt.Fprint(w, pageJSON("", 3, 2, 1)) })
	c, _ := newTestClient(t, srv.URL, nil)
	stop := errors.New("store full")
	calls := 0
	err := c.Iterate(context.Background(), ListOptions{}, func(Post) (bool, error) { calls++; return true, stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Iterate = %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func TestErrorAnswersAreClassified(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		body          string
		header        map[string]string
		wantRetryable bool
		wantRateLimit bool
		wantStatus    int
	}{
		{"401 with a signature status is permanent", 401, `{"status":40103,"message":"Signature mismatch"}`, nil, false, false, 40103},
		{"403 is permanent", 403, `{"status":40300,"message":"forbidden"}`, nil, false, false, 40300},
		{"404 is permanent", 404, `not found`, nil, false, false, 0},
		{"429 is rate limited and retryable", 429, `{"status":42901,"message":"too many"}`, map[string]string{"Retry-After": "7"}, true, true, 42901},
		{"a rate-limit status under HTTP 200 is rate limited", 200, `{"status":42901,"message":"too many"}`, nil, true, true, 42901},
		{"another status under HTTP 200 is permanent", 200, `{"status":40001,"message":"bad count"}`, nil, false, false, 40001},
		{"502 with an HTML body is retryable", 502, `<html>Bad Gateway</html>`, nil, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			})
			c, _ := newTestClient(t, srv.URL, func(c *Config) { c.MaxRetries = 2 })
			_, err := c.ListPosts(context.Background(), ListOptions{})
			apiErr, ok := errors.AsType[*APIError](err)
			if !ok {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if apiErr.HTTPStatus != tt.status || apiErr.Status != tt.wantStatus {
				t.Errorf("APIError = %+v", apiErr)
			}
			if IsRetryable(err) != tt.wantRetryable || errors.Is(err, ErrRateLimited) != tt.wantRateLimit {
				t.Errorf("retryable %v, rate limited %v", IsRetryable(err), errors.Is(err, ErrRateLimited))
			}
			wantRequests := 1
			if tt.wantRetryable {
				wantRequests = 3
			}
			if n := len(rec.seen()); n != wantRequests {
				t.Errorf("%d requests, want %d", n, wantRequests)
			}
			if strings.Contains(err.Error(), "tucao123") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestRateLimitedRetryWaitsForRetryAfter(t *testing.T) {
	var stamps []time.Time
	var mu sync.Mutex
	_, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
		ts, _ := strconv.ParseInt(r.Header.Get("Timestamp"), 10, 64)
		mu.Lock()
		stamps = append(stamps, time.Unix(ts, 0))
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "40")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, pageJSON(""))
	})
	c, _ := newTestClient(t, srv.URL, nil)
	if _, err := c.ListPosts(context.Background(), ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(stamps) != 2 || stamps[1].Sub(stamps[0]) < 40*time.Second {
		t.Errorf("retry timestamps %v, want the second at least 40 s after the first", stamps)
	}
}

func TestCancelledContextStopsRetrying(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
		cancel()
		w.WriteHeader(http.StatusInternalServerError)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	_, err := c.ListPosts(ctx, ListOptions{})
	if !errors.Is(err, context.Canceled) || IsRetryable(err) {
		t.Errorf("ListPosts = %v, want context.Canceled and not retryable", err)
	}
	if n := len(rec.seen()); n != 1 {
		t.Errorf("%d requests after cancel, want 1", n)
	}
}

// TestRedirectsNeverCarryTheSignatureElsewhere: a server (or a proxy in
// front of it) that redirects to another host must not receive the
// product's signature there, with the default client or a caller's.
func TestRedirectsNeverCarryTheSignatureElsewhere(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, client := range []string{"default", "caller's", "caller's that allows every redirect"} {
			t.Run(fmt.Sprintf("%d with the %s client", status, client), func(t *testing.T) {
				elsewhere, other := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
					fmt.Fprint(w, pageJSON("", 1))
				})
				_, origin := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
					http.Redirect(w, r, other.URL+r.URL.RequestURI(), status)
				})
				var callers *http.Client
				allowed := 0
				switch client {
				case "caller's":
					callers = &http.Client{Timeout: time.Second}
				case "caller's that allows every redirect":
					callers = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { allowed++; return nil }}
				}
				c, _ := newTestClient(t, origin.URL, func(cfg *Config) { cfg.HTTPClient = callers })
				_, err := c.ListPosts(context.Background(), ListOptions{Count: 10})
				if got := elsewhere.seen(); len(got) != 0 {
					t.Fatalf("the other host received %d requests (Signature %q, Timestamp %q)",
						len(got), got[0].Header.Get("Signature"), got[0].Header.Get("Timestamp"))
				}
				if !errors.Is(err, ErrRedirect) || IsRetryable(err) {
					t.Fatalf("err = %v; want a permanent ErrRedirect", err)
				}
				if strings.Contains(err.Error(), "tucao123") {
					t.Fatalf("the error shows the secret: %v", err)
				}
				if allowed != 0 {
					t.Errorf("the caller's policy was asked about a redirect to another host")
				}
				// The caller's client is wrapped, not changed.
				switch client {
				case "caller's":
					if callers.CheckRedirect != nil {
						t.Errorf("New set CheckRedirect on the caller's client")
					}
				case "caller's that allows every redirect":
					if callers.CheckRedirect(nil, nil); allowed != 1 {
						t.Errorf("the caller's client no longer has its own CheckRedirect")
					}
				}
			})
		}
	}
}

// TestRedirectsOnTheSameHostAreFollowed: a redirect that stays on the
// host (a moved path behind a proxy) keeps working, signed, and a caller's
// policy still has its say.
func TestRedirectsOnTheSameHostAreFollowed(t *testing.T) {
	rec, srv := startRecorder(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/api/v1/1234/posts" {
			http.Redirect(w, r, "/moved"+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		fmt.Fprint(w, pageJSON("", 7))
	})
	asked := 0
	callers := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { asked++; return nil }}
	c, _ := newTestClient(t, srv.URL, func(cfg *Config) { cfg.HTTPClient = callers })
	page, err := c.ListPosts(context.Background(), ListOptions{Count: 10})
	if err != nil || len(page.Posts) != 1 {
		t.Fatalf("page %+v, err %v", page, err)
	}
	reqs := rec.seen()
	if len(reqs) != 2 || reqs[1].URL.Path != "/moved/api/v1/1234/posts" || reqs[1].Header.Get("Signature") == "" {
		t.Fatalf("requests %d; the redirected one should be signed on the same host", len(reqs))
	}
	if asked != 1 {
		t.Errorf("the caller's CheckRedirect was asked %d times, want 1", asked)
	}
}
