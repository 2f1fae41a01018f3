package console

import (
	"context"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/services/feedback/store"
)

// Bounds of a feedback query.
const (
	maxFilterLen  = 128
	feedbackLimit = 50
	queryTimeout  = 10 * time.Second
)

// feedback answers the posts of one customer (or all, or those containing
// a text) in a POST body, {"openid": "...", "q": "..."}, so that the
// customer is never in a URL. With the feedback store it asks the store's
// query layer, which links posts to sessions across everything kept;
// otherwise it filters the latest posts the console read from the bus.
func (s *Service) feedback(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r); !ok {
		return
	}
	var body struct {
		OpenID string `json:"openid"`
		Q      string `json:"q"`
	}
	// A body over the limit is a bad body here: no 413.
	if !decodeBody(w, r, &body, maxLoginBody, "", `bad JSON body: want {"openid": "...", "q": "..."}`) {
		return
	}
	body.OpenID, body.Q = strings.TrimSpace(body.OpenID), strings.TrimSpace(body.Q)
	if len(body.OpenID) > maxFilterLen || utf8.RuneCountInString(body.Q) > maxFilterLen || !utf8.ValidString(body.Q) {
		writeError(w, http.StatusBadRequest, "openid and q are at most 128 characters")
		return
	}
	if s.deps.Posts == nil {
		writeJSON(w, http.StatusOK, map[string]any{"items": s.filterLive(body.OpenID, body.Q), "source": "bus"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	page, err := s.deps.Posts.ListPosts(ctx, store.PostQuery{OpenID: body.OpenID, Q: body.Q, Limit: feedbackLimit})
	if err != nil {
		s.log.Warn("console feedback query failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "the feedback store did not answer")
		return
	}
	items := make([]Post, 0, len(page.Items))
	for _, p := range page.Items {
		post := Post{ID: p.ID, OpenID: p.OpenID, NickName: truncate(p.NickName, 64), Content: truncate(p.Content, maxText),
			CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, ReplyCount: p.ReplyCount, Replies: parseReplies(p.Replies)}
		if p.Session != nil {
			post.Session = &LinkedSession{KfAccount: p.Session.KfAccount, StartedAt: p.Session.StartedAt, ClosedAt: p.Session.ClosedAt}
		}
		items = append(items, post)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "source": "store"})
}

func (s *Service) filterLive(openid, q string) []Post {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	out := []Post{}
	q = strings.ToLower(q)
	for _, p := range s.hub.st.posts {
		if openid != "" && p.OpenID != openid {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(p.Content), q) {
			continue
		}
		out = append(out, p)
	}
	return out
}
