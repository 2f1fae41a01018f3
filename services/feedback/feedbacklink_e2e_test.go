package feedback_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
	"github.com/kefu-io/kefu/services/ingest"
	"github.com/kefu-io/kefu/services/notifier"
)

var (
	feedbackLinkRE = regexp.MustCompile(`https://[^\s]+/feedback/[A-Za-z0-9_.-]+`)
	formActionRE   = regexp.MustCompile(`<form id="tucao" method="post" action="([^"]+)">`)
	hiddenFieldRE  = regexp.MustCompile(`<input type="hidden" name="(\w+)" value="([^"]*)">`)
)

// The whole way of a customer's feedback: the session closes, the notifier
// sends the feedback link, the customer opens it, the page logs them in to
// Tucao and they post; the poller brings the post onto the bus, the
// feedback service stores it, and the sessions list shows it on the
// session — while neither Tucao, nor the link, nor the page, nor the store
// ever saw the customer's openid.
func TestFeedbackLinkEndToEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		ctx := context.Background()
		const (
			openid = "oE2eCustomerOpenID000000001"
			agent  = "li@gh_test"
		)
		h := newHarness(t, storetest.Open(t, backend))
		keys := testKeys(t)
		svc := h.startWithPseudonyms(keys)
		closedAt := time.Now().Truncate(time.Second)

		// Tucao, whose clock is a minute on: the post comes after the close.
		tc := tucaotest.New(tucaotest.Options{RateLimit: -1, Clock: tucao.NewFakeClock(closedAt.Add(time.Minute))})
		t.Cleanup(tc.Close)

		weixin, web := startLinkNotifier(t, ctx, h.bus, tc, openid, map[string]string{agent: "小李"})

		// The session closes.
		h.publishClosed(openid, agent, closedAt)

		// The customer gets the link in WeChat and opens it.
		var link string
		natstest.Eventually(t, 20*time.Second, func() bool {
			for _, m := range weixin.Sent() {
				if m.OpenID == openid {
					link = feedbackLinkRE.FindString(m.Content)
					return true
				}
			}
			return false
		}, "the closed-session message")
		if link == "" || strings.Contains(link, openid) {
			t.Fatalf("the message carries link %q; want a feedback link without the openid", link)
		}
		resp, err := web.Client().Get(link)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(page), openid) {
			t.Fatalf("the page (%d) must open and not show the openid:\n%s", resp.StatusCode, page)
		}
		action := formActionRE.FindStringSubmatch(string(page))
		if action == nil {
			t.Fatalf("no login form on the page:\n%s", page)
		}
		form := url.Values{}
		for _, f := range hiddenFieldRE.FindAllStringSubmatch(string(page), -1) {
			form.Set(f[1], html.UnescapeString(f[2]))
		}
		if form.Get("openid") != keys.Pseudonym(openid) {
			t.Fatalf("the form posts openid=%q, want the pseudonym %q", form.Get("openid"), keys.Pseudonym(openid))
		}

		// The browser posts the form to Tucao, and the customer writes.
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar}
		resp, err = browser.PostForm(html.UnescapeString(action[1]), form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resp, err = browser.PostForm(html.UnescapeString(action[1])+"/post", url.Values{"content": {"小李很耐心，问题解决了"}})
		if err != nil {
			t.Fatal(err)
		}
		postID, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("writing the post: %d %s", resp.StatusCode, postID)
		}
		if logins := tc.Logins(); len(logins) != 1 || logins[0].OpenID != keys.Pseudonym(openid) {
			t.Fatalf("Tucao saw logins %+v, want one under the pseudonym", logins)
		}

		// The poller brings the post onto the bus; the service stores it.
		tucaoClient, err := tucao.New(tc.ClientConfig())
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
			t.Fatalf("poll: %+v, %v; want the one post", res, err)
		}
		h.drainedAll()

		sessions := get[store.SessionPage](t, svc, "/api/feedback/sessions", url.Values{"openid": {openid}})
		if len(sessions.Items) != 1 {
			t.Fatalf("%d sessions of the customer, want 1", len(sessions.Items))
		}
		s := sessions.Items[0]
		if s.KfAccount != agent || !s.ClosedAt.Equal(closedAt) || len(s.Posts) != 1 || s.Posts[0].ID != string(postID) {
			t.Fatalf("session %s closed %v with posts %+v; want %s's session with post %s", s.KfAccount, s.ClosedAt, s.Posts, agent, postID)
		}
		if s.Posts[0].OpenID != keys.Pseudonym(openid) || s.Posts[0].NickName != notifier.DefaultFeedbackNickname {
			t.Errorf("the linked post is by %q (%s), want the pseudonym and the feedback nickname", s.Posts[0].OpenID, s.Posts[0].NickName)
		}
		mine := get[store.PostPage](t, svc, "/api/feedback/posts", url.Values{"openid": {openid}})
		if len(mine.Items) != 1 || mine.Items[0].Session == nil || mine.Items[0].Session.KfAccount != agent {
			t.Errorf("posts?openid= lists %+v, want the post linked to %s's session", mine.Items, agent)
		}
		for _, p := range allPosts(t, svc) {
			if p.OpenID == openid || strings.Contains(string(p.Extra)+string(p.Replies)+p.Content, openid) {
				t.Errorf("stored post %s carries the raw openid", p.ID)
			}
		}
		for _, p := range tc.Posts() {
			if p.OpenID == openid {
				t.Errorf("Tucao has post %s under the raw openid", p.ID)
			}
		}
	})
}
