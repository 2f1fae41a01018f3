package feedback_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
	"github.com/kefu-io/kefu/services/ingest"
)

// A Tucao post created through the feedback link is linked to its exact
// session. The customer had two sessions and answers the first one's link
// after the second closed — where the openid-and-time rule would pick the
// second: the link's customInfo, returned by Tucao as the post's extra,
// names the first, and the store links it there. Tucao's clock runs ten
// minutes ahead of this host's, beyond what it accepts in a Timestamp: the
// poller's client corrects for it and the poll succeeds.
func TestPostThroughTheLinkIsLinkedToItsExactSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		ctx := context.Background()
		const openid = "oE2eTwoSessionsCustomer0001"
		first, second := "li@gh_test", "wang@gh_test"
		h := newHarness(t, storetest.Open(t, backend))
		keys := testKeys(t)
		svc := h.startWithPseudonyms(keys)
		closedFirst := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
		closedSecond := closedFirst.Add(10 * time.Minute)

		tucaoNow := time.Now().Add(10 * time.Minute)
		if !tucaoNow.After(closedSecond) {
			t.Fatal("the post must come after both closes")
		}
		tc := tucaotest.New(tucaotest.Options{RateLimit: -1, Clock: tucao.NewFakeClock(tucaoNow)})
		t.Cleanup(tc.Close)
		weixin, web := startLinkNotifier(t, ctx, h.bus, tc, openid, map[string]string{first: "客服", second: "客服"})

		// Two sessions close, one after the other; a link comes for each.
		h.publishCreated(openid, first, closedFirst.Add(-5*time.Minute))
		h.publishClosed(openid, first, closedFirst)
		h.publishCreated(openid, second, closedFirst.Add(time.Minute))
		h.publishClosed(openid, second, closedSecond)
		var links []string
		natstest.Eventually(t, 20*time.Second, func() bool {
			links = links[:0]
			for _, m := range weixin.Sent() {
				if m.OpenID == openid {
					if l := feedbackLinkRE.FindString(m.Content); l != "" {
						links = append(links, l)
					}
				}
			}
			return len(links) == 2
		}, "both closed-session messages")

		// The customer opens the link of the session with li — the one
		// that names li's close — and writes.
		var linkFirst string
		for _, l := range links {
			if sessionOfPage(t, web.Client(), l).ID == events.SessionID(openid, first, closedFirst) {
				linkFirst = l
			}
		}
		if linkFirst == "" {
			t.Fatalf("no link names li's session %s: %v", events.SessionID(openid, first, closedFirst), links)
		}
		postID := writeThroughLink(t, web.Client(), linkFirst, "小李帮我解决了退款")
		if logins := tc.Logins(); len(logins) != 1 || logins[0].OpenID != keys.Pseudonym(openid) || logins[0].CustomInfo == "" {
			t.Fatalf("Tucao logins %+v, want one under the pseudonym with customInfo", logins)
		}

		// The post travels: Tucao → poller → bus → store; the poller's
		// client runs on this host's clock, ten minutes behind Tucao's.
		tucaoCfg := tc.ClientConfig()
		tucaoCfg.Clock = tucao.SystemClock()
		tucaoClient, err := tucao.New(tucaoCfg)
		if err != nil {
			t.Fatal(err)
		}
		cursors, _ := h.bus.KeyValue(ctx, bus.BucketCursors)
		locks, _ := h.bus.KeyValue(ctx, bus.BucketLocks)
		poller, err := ingest.NewTucaoPoller(ingest.TucaoConfig{ProductID: tc.ProductID(), Holder: "e2e", Interval: time.Hour},
			tucaoClient, h.bus, cursors, locks, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := poller.PollOnce(ctx); err != nil || res.Created != 1 {
			t.Fatalf("poll with the host clock ten minutes behind Tucao: %+v, %v; want the one post", res, err)
		}
		if skew := tucaoClient.ClockSkew(); skew < 9*time.Minute || skew > 11*time.Minute {
			t.Errorf("the client corrected a skew of %v, want about 10m", skew)
		}
		h.drainedAll()

		mine := get[store.PostPage](t, svc, "/api/feedback/posts", url.Values{"openid": {openid}})
		if len(mine.Items) != 1 || mine.Items[0].ID != postID {
			t.Fatalf("posts of the customer: %+v, want post %s", mine.Items, postID)
		}
		linked := mine.Items[0].Session
		if linked == nil || linked.KfAccount != first || !linked.ClosedAt.Equal(closedFirst) ||
			linked.LinkedBy != store.LinkedBySessionID || linked.SessionID != events.SessionID(openid, first, closedFirst) {
			t.Fatalf("the post is linked to %+v; want li's session closed at %v, by its session id", linked, closedFirst)
		}
		sessions := get[store.SessionPage](t, svc, "/api/feedback/sessions", url.Values{"openid": {openid}})
		got := map[string][]string{}
		for _, s := range sessions.Items {
			for _, p := range s.Posts {
				got[s.KfAccount] = append(got[s.KfAccount], p.ID)
			}
		}
		if len(sessions.Items) != 2 || len(got[first]) != 1 || got[first][0] != postID || len(got[second]) != 0 {
			t.Errorf("sessions list the post under %v; want li's session only", got)
		}
	})
}

// sessionOfPage opens a feedback link and returns the session its form
// passes to Tucao as customInfo.
func sessionOfPage(t *testing.T, c *http.Client, link string) feedbacklink.Session {
	t.Helper()
	form, _ := openFeedbackPage(t, c, link)
	var s feedbacklink.Session
	s.ID = feedbacklink.SessionIDOf([]byte(form.Get("customInfo")))
	return s
}

func openFeedbackPage(t *testing.T, c *http.Client, link string) (url.Values, string) {
	t.Helper()
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	action := formActionRE.FindStringSubmatch(string(page))
	if resp.StatusCode != http.StatusOK || action == nil {
		t.Fatalf("feedback page %d without a login form:\n%s", resp.StatusCode, page)
	}
	form := url.Values{}
	for _, f := range hiddenFieldRE.FindAllStringSubmatch(string(page), -1) {
		form.Set(f[1], html.UnescapeString(f[2]))
	}
	return form, html.UnescapeString(action[1])
}

// writeThroughLink is the customer opening the link, being logged in to
// Tucao by the page and writing content; it returns the post's id.
func writeThroughLink(t *testing.T, c *http.Client, link, content string) string {
	t.Helper()
	form, action := openFeedbackPage(t, c, link)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.PostForm(action, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = browser.PostForm(action+"/post", url.Values{"content": {content}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("writing the post: %d %s", resp.StatusCode, id)
	}
	return string(id)
}
