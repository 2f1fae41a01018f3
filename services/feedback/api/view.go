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

// pageJSON is a page of a list as the API answers it.
type pageJSON[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// viewPage answers a store page: its items through view, and its cursor.
func viewPage[S, T any](items []S, next string, view func(S) T) pageJSON[T] {
	out := pageJSON[T]{Items: make([]T, 0, len(items)), NextCursor: next}
	for _, it := range items {
		out.Items = append(out.Items, view(it))
	}
	return out
}

func viewPostPage(page store.PostPage) pageJSON[postItemJSON] {
	return viewPage(page.Items, page.NextCursor, func(p store.Post) postItemJSON {
		item := postItemJSON{postJSON: viewPost(p.FeedbackPost)}
		if p.Session != nil {
			item.Session = &linkedSessionJSON{LinkedSession: *p.Session, ClosedAt: known(p.Session.ClosedAt)}
		}
		return item
	})
}

type sessionJSON struct {
	store.Session
	ClosedAt *time.Time `json:"closed_at,omitempty"`
	Posts    []postJSON `json:"posts"`
}

func viewSessionPage(page store.SessionPage) pageJSON[sessionJSON] {
	return viewPage(page.Items, page.NextCursor, func(s store.Session) sessionJSON {
		item := sessionJSON{Session: s, ClosedAt: known(s.ClosedAt), Posts: make([]postJSON, 0, len(s.Posts))}
		for _, p := range s.Posts {
			item.Posts = append(item.Posts, viewPost(p))
		}
		return item
	})
}
