package notifier_test

import (
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

var customInfoRE = regexp.MustCompile(`<input type="hidden" name="customInfo" value="([^"]*)">`)

// The link sent when a session closes names that session, and its page
// passes it to Tucao as customInfo; a link with no session (the one other
// roles ask for) passes none.
func TestClosedSessionLinkNamesTheSession(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	p := h.start(linkConfig("p1"))
	mux := http.NewServeMux()
	p.svc.Routes(mux)
	web := httptest.NewServer(mux)
	defer web.Close()
	page := func(link string) string {
		t.Helper()
		token := strings.TrimPrefix(link, "https://kefu.example.com/feedback/")
		resp, err := http.Get(web.URL + "/feedback/" + token)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: %s", resp.StatusCode, body)
		}
		return string(body)
	}

	const openid = "o-closed-session-link"
	h.customer(openid)
	ev, id := h.closed(openid, li)
	h.publish(ev, id)
	var link string
	natstest.Eventually(t, patience, func() bool {
		for _, m := range h.sent()[openid] {
			link = regexp.MustCompile(`https://kefu\.example\.com/feedback/\S+`).FindString(m.Content)
		}
		return link != ""
	}, "the closed-session message")
	m := customInfoRE.FindStringSubmatch(page(link))
	if m == nil {
		t.Fatalf("the page of the closed-session link passes no customInfo")
	}
	info := html.UnescapeString(m[1])
	closed := ev.(events.SessionClosed)
	if got := feedbacklink.SessionIDOf([]byte(info)); got != closed.SessionID() {
		t.Errorf("customInfo %s names session %q, want %q", info, got, closed.SessionID())
	}
	if !strings.Contains(info, `"kf_account":"`+li+`"`) || strings.Contains(info, openid) {
		t.Errorf("customInfo %s: want the agent and no openid", info)
	}

	if body := page(p.svc.FeedbackURL(openid)); customInfoRE.MatchString(body) || !strings.Contains(body, `name="openid"`) {
		t.Errorf("a link without a session: the page passes customInfo or no login:\n%s", body)
	}
}
