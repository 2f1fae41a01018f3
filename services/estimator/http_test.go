package estimator_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/services/estimator"
)

func serveQueue(t *testing.T, s *estimator.Service) string {
	t.Helper()
	mux := http.NewServeMux()
	s.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/api/kf/queue"
}

func fetch(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// Before its first poll the estimator says "not yet" with a Retry-After
// of one poll interval; a method other than GET or HEAD is a 405 with
// Allow. Both are problems.
func TestQueueErrorsAreProblems(t *testing.T) {
	h := newHarness(t)
	s := h.service("a") // PollInterval: one hour, never started
	url := serveQueue(t, s)

	resp, body := fetch(t, "GET", url)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("before the first poll: %d %s", resp.StatusCode, body)
	}
	p := httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, body)
	if p.Type != httpapi.NotReady.URI() || resp.Header.Get("Retry-After") != "3600" {
		t.Fatalf("type %q, Retry-After %q; want not-ready, 3600 (the poll interval)", p.Type, resp.Header.Get("Retry-After"))
	}

	for _, method := range []string{"POST", "DELETE"} {
		resp, body := fetch(t, method, url)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Fatalf("%s: %d, Allow %q", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
		httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, body)
	}
}

var fractionalOrZoned = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+|[+-]\d\d:\d\d)"`)

// The view's times are RFC 3339 UTC with whole seconds, and the tail —
// the estimate for customers beyond getwaitcase's list, who have no
// "since" — has none rather than the year 1.
func TestQueueViewTimes(t *testing.T) {
	h := newHarness(t)
	h.fake.AddAgent("a1@test", "一号")
	h.fake.SetAgentStatus("a1@test", wechattest.StatusPC)
	for i := range 102 { // two beyond the 100 getwaitcase lists
		if err := h.fake.TransferToQueue(fmt.Sprintf("o-%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	s := h.service("a")
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if err := s.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, body := fetch(t, "GET", serveQueue(t, s))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("%d %s: %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if !strings.Contains(string(body), `"tail":{`) {
		t.Fatalf("no tail in the view: %.300s", body)
	}
	httpapitest.CheckNoZeroTime(t, body)
	if m := fractionalOrZoned.Find(body); m != nil {
		t.Fatalf("time %s is not UTC with whole seconds", m)
	}
	if !regexp.MustCompile(`"at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`).Match(body) {
		t.Fatalf("no at in UTC seconds: %.300s", body)
	}
}
