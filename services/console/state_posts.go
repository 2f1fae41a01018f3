package console

import (
	"encoding/json"
	"sort"

	"github.com/kefu-io/kefu/pkg/events"
)

// applyPost adds or updates a Tucao post, linked to the customer's last
// session the console saw (the store links across everything it kept).
func (s *state) applyPost(p events.FeedbackPost, o *ops) {
	post := Post{ID: p.ID, OpenID: p.OpenID, NickName: truncate(p.NickName, 64), Content: truncate(p.Content, maxText),
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, ReplyCount: p.ReplyCount, Replies: parseReplies(p.Replies)}
	if ls, ok := s.lastSession[p.OpenID]; ok && p.OpenID != "" {
		post.Session = &ls
	}
	for i, q := range s.posts {
		if q.ID == p.ID {
			s.posts = append(s.posts[:i:i], s.posts[i+1:]...)
			break
		}
	}
	s.posts = append([]Post{post}, s.posts...)
	sort.SliceStable(s.posts, func(i, j int) bool { return s.posts[i].CreatedAt.After(s.posts[j].CreatedAt) })
	if len(s.posts) > maxPosts {
		dropped := s.posts[maxPosts:]
		s.posts = s.posts[:maxPosts]
		for _, d := range dropped {
			if d.ID == post.ID {
				return // older than everything kept
			}
			o.del("posts", d.ID)
		}
	}
	o.put("posts", post.ID, post)
}

func parseReplies(raw json.RawMessage) []Reply {
	out := []Reply{}
	if len(raw) == 0 {
		return out
	}
	var rs []Reply
	if json.Unmarshal(raw, &rs) != nil {
		return out
	}
	for _, r := range rs {
		if len(out) == maxReplies {
			break
		}
		r.NickName, r.Content, r.CreatedAt = truncate(r.NickName, 64), truncate(r.Content, maxText), truncate(r.CreatedAt, 40)
		out = append(out, r)
	}
	return out
}
