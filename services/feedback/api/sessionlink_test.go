package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/api"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

// The answers say which session a post is linked to and how, under the
// JSON names the API documents.
func TestAnswersNameTheSessionAndHowItWasLinked(t *testing.T) {
	s := storetest.Open(t, storetest.SQLite)
	ctx := context.Background()
	first := time.Date(2025, 3, 1, 9, 0, 0, 0, shanghai)
	second := first.Add(time.Hour)
	if err := s.RecordSessions(ctx, []store.SessionFact{
		{Kind: store.SessionFactClosed, OpenID: "o-a", KfAccount: "kf1", At: first},
		{Kind: store.SessionFactClosed, OpenID: "o-a", KfAccount: "kf2", At: second},
	}); err != nil {
		t.Fatal(err)
	}
	named := post(1, "o-a", second.Add(time.Hour), "about kf1")
	named.Extra = json.RawMessage(feedbacklink.CustomInfo(&feedbacklink.Session{ID: events.SessionID("o-a", "kf1", first), KfAccount: "kf1", ClosedAt: first}))
	if err := s.UpsertPosts(ctx, []events.FeedbackPost{named, post(2, "o-a", second.Add(time.Hour), "no name")}); err != nil {
		t.Fatal(err)
	}
	h := api.New(s, zap.NewNop())

	rec := get(t, h, http.MethodGet, "/api/feedback/posts?openid=o-a")
	var posts struct {
		Items []struct {
			ID      string `json:"id"`
			Session struct {
				SessionID string `json:"session_id"`
				LinkedBy  string `json:"linked_by"`
				KfAccount string `json:"kf_account"`
			} `json:"session"`
		} `json:"items"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &posts); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("posts: %d %s", rec.Code, rec.Body)
	}
	want := map[string][3]string{
		"1": {events.SessionID("o-a", "kf1", first), "session_id", "kf1"},
		"2": {events.SessionID("o-a", "kf2", second), "openid", "kf2"},
	}
	for _, p := range posts.Items {
		if got := [3]string{p.Session.SessionID, p.Session.LinkedBy, p.Session.KfAccount}; got != want[p.ID] {
			t.Errorf("post %s session %v, want %v", p.ID, got, want[p.ID])
		}
	}
	if len(posts.Items) != 2 {
		t.Errorf("%d posts, want 2", len(posts.Items))
	}

	rec = get(t, h, http.MethodGet, "/api/feedback/sessions?openid=o-a")
	var sessions struct {
		Items []struct {
			SessionID string `json:"session_id"`
			KfAccount string `json:"kf_account"`
			Posts     []struct {
				ID string `json:"id"`
			} `json:"posts"`
		} `json:"items"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &sessions); err != nil || rec.Code != http.StatusOK || len(sessions.Items) != 2 {
		t.Fatalf("sessions: %d %s", rec.Code, rec.Body)
	}
	for _, sess := range sessions.Items {
		wantPost := map[string]string{"kf1": "1", "kf2": "2"}[sess.KfAccount]
		if len(sess.Posts) != 1 || sess.Posts[0].ID != wantPost || sess.SessionID == "" {
			t.Errorf("session of %s (id %q) lists %+v, want post %s", sess.KfAccount, sess.SessionID, sess.Posts, wantPost)
		}
	}
}
