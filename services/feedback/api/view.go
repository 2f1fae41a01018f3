package api

import (
	"time"

	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// The answers' views of the store's pages. They are the store's types but
// for times: the event types (package events, a contract of their own)
// write a time they do not know as the year 1, which an HTTP answer leaves
// out instead (docs/http-api.md). httpapi.WriteJSON writes the others in
// UTC with whole seconds.

// postJSON is a post; an unknown time (no reply yet, an event stored
// without its receive time) is left out.
type postJSON struct {
	events.FeedbackPost
	OccurredAt  *time.Time `json:"occurred_at,omitempty"`
	ReceivedAt  *time.Time `json:"received_at,omitempty"`
	CreatedAt   *time.Time `json:"created_at,omitempty"`
	UpdatedAt   *time.Time `json:"updated_at,omitempty"`
	LastReplyAt *time.Time `json:"last_reply_at,omitempty"`
}

func viewPost(p events.FeedbackPost) postJSON {
	return postJSON{FeedbackPost: p, OccurredAt: known(p.OccurredAt), ReceivedAt: known(p.ReceivedAt),
		CreatedAt: known(p.CreatedAt), UpdatedAt: known(p.UpdatedAt), LastReplyAt: known(p.LastReplyAt)}
}

func known(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

type postItemJSON struct {
	postJSON
	Session *linkedSessionJSON `json:"session,omitempty"`
}

type linkedSessionJSON struct {
	store.LinkedSession
	ClosedAt *time.Time `json:"closed_at,omitempty"`
}

type postPageJSON struct {
	Items      []postItemJSON `json:"items"`
	NextCursor string         `json:"next_cursor"`
}

func viewPostPage(page store.PostPage) postPageJSON {
	out := postPageJSON{Items: make([]postItemJSON, 0, len(page.Items)), NextCursor: page.NextCursor}
	for _, p := range page.Items {
		item := postItemJSON{postJSON: viewPost(p.FeedbackPost)}
		if p.Session != nil {
			item.Session = &linkedSessionJSON{LinkedSession: *p.Session, ClosedAt: known(p.Session.ClosedAt)}
		}
		out.Items = append(out.Items, item)
	}
	return out
}

type sessionJSON struct {
	store.Session
	ClosedAt *time.Time `json:"closed_at,omitempty"`
	Posts    []postJSON `json:"posts"`
}

type sessionPageJSON struct {
	Items      []sessionJSON `json:"items"`
	NextCursor string        `json:"next_cursor"`
}

func viewSessionPage(page store.SessionPage) sessionPageJSON {
	out := sessionPageJSON{Items: make([]sessionJSON, 0, len(page.Items)), NextCursor: page.NextCursor}
	for _, s := range page.Items {
		item := sessionJSON{Session: s, ClosedAt: known(s.ClosedAt), Posts: make([]postJSON, 0, len(s.Posts))}
		for _, p := range s.Posts {
			item.Posts = append(item.Posts, viewPost(p))
		}
		out.Items = append(out.Items, item)
	}
	return out
}
