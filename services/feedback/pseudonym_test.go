package feedback_test

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/services/feedback"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

const linkSecret = "feedback-test-link-secret"

func testKeys(t *testing.T) feedbacklink.Keys {
	t.Helper()
	keys, err := feedbacklink.NewKeys(linkSecret, "")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// startWithPseudonyms starts a service that knows the pseudonym key.
func (h *harness) startWithPseudonyms(keys feedbacklink.Keys) *feedback.Service {
	h.t.Helper()
	svc, err := feedback.New(testConfig(), feedback.Deps{Bus: h.bus, Store: h.store, Pseudonym: keys.Pseudonym})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		if err := svc.Stop(context.Background()); err != nil {
			h.t.Errorf("stop: %v", err)
		}
	})
	return svc
}

func sessionPosts(t *testing.T, svc *feedback.Service) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, s := range get[store.SessionPage](t, svc, "/api/feedback/sessions", nil).Items {
		ids := []string{}
		for _, p := range s.Posts {
			ids = append(ids, p.ID)
		}
		out[s.OpenID] = ids
	}
	return out
}

func postIDs(page store.PostPage) []string {
	ids := []string{}
	for _, p := range page.Items {
		ids = append(ids, p.ID)
	}
	return ids
}

func TestPostsUnderThePseudonymLinkToTheSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend storetest.Backend) {
		st := storetest.Open(t, backend)
		keys := testKeys(t)
		// A session an older kefu stored, without pseudonym: the service
		// fills it in when it starts.
		if err := st.RecordSessions(context.Background(), []store.SessionFact{
			{Kind: store.SessionFactClosed, OpenID: "o-old", KfAccount: "kf1", At: t0},
		}); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, st)
		svc := h.startWithPseudonyms(keys)

		h.publishCreated("o-new", "kf2", t0)
		h.publishClosed("o-new", "kf2", t0.Add(10*time.Minute))
		h.publishPost(post(1, keys.Pseudonym("o-new"), t0.Add(time.Hour), "through the link"))
		h.publishPost(post(2, "o-old", t0.Add(time.Hour), "before pseudonyms"))
		h.publishPost(post(3, keys.Pseudonym("o-old"), t0.Add(2*time.Hour), "an old link, opened after the upgrade"))
		h.publishPost(post(4, keys.Pseudonym("o-none"), t0.Add(time.Hour), "no session of ours"))
		h.drainedAll()

		natstest.Eventually(t, 20*time.Second, func() bool {
			return slices.Equal(sessionPosts(t, svc)["o-old"], []string{"3", "2"})
		}, "the old session's pseudonym to be filled")
		if got := sessionPosts(t, svc)["o-new"]; !slices.Equal(got, []string{"1"}) {
			t.Errorf("o-new's session lists posts %v, want [1]", got)
		}
		for _, c := range []struct {
			openid string
			want   []string
		}{
			{"o-new", []string{"1"}},
			{"o-old", []string{"3", "2"}},
			// No fact records it: found through the service's key.
			{"o-none", []string{"4"}},
		} {
			page := get[store.PostPage](t, svc, "/api/feedback/posts", url.Values{"openid": {c.openid}})
			if got := postIDs(page); !slices.Equal(got, c.want) {
				t.Errorf("posts?openid=%s = %v, want %v", c.openid, got, c.want)
			}
		}
	})
}

func TestWithoutTheKeyPostsLinkByOpenIDOnly(t *testing.T) {
	h := newHarness(t, storetest.Open(t, storetest.SQLite))
	svc := h.start(testConfig(), nil)
	keys := testKeys(t)
	h.publishClosed("o-1", "kf1", t0)
	h.publishPost(post(1, "o-1", t0.Add(time.Hour), "before pseudonyms"))
	h.publishPost(post(2, keys.Pseudonym("o-1"), t0.Add(2*time.Hour), "through the link"))
	h.drainedAll()
	if got := sessionPosts(t, svc)["o-1"]; !slices.Equal(got, []string{"1"}) {
		t.Errorf("session posts %v, want [1]: without the key no pseudonym is known", got)
	}
	if got := postIDs(get[store.PostPage](t, svc, "/api/feedback/posts", url.Values{"openid": {"o-1"}})); !slices.Equal(got, []string{"1"}) {
		t.Errorf("posts?openid=o-1 = %v, want [1]", got)
	}
}
