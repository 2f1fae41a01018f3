package tucaotest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

// PostInput describes a new post. Only Content is needed.
type PostInput struct {
	Content   string
	OpenID    string // the site's user id; empty gives an anonymous "tucao_<n>" id
	NickName  string // default "匿名用户"
	AvatarURL string // default Tucao's default avatar
	IsAdmin   bool
	// CreatedAt defaults to the server's clock. Add posts oldest first:
	// ids always increase, as on Tucao, so an older CreatedAt added later
	// would get a newer id.
	CreatedAt  time.Time
	Images     []string        // image URLs
	Extra      json.RawMessage // the site's customInfo; default []
	Categories []string
}

// ReplyInput describes a reply.
type ReplyInput struct {
	Content   string
	OpenID    string
	NickName  string
	AvatarURL string
	IsAdmin   bool      // an answer from the product team
	CreatedAt time.Time // default the server's clock
}

// Reply is the shape of an entry of a post's replies and replies_all. Tucao's
// API documentation does not show it; this is what kefu's fake writes.
type Reply struct {
	ID        string `json:"id"`
	PostID    string `json:"post_id"`
	Content   string `json:"content"`
	NickName  string `json:"nick_name"`
	AvatarURL string `json:"avatar_url"`
	OpenID    string `json:"openid"`
	UserID    int64  `json:"user_id"`
	IsAdmin   bool   `json:"is_admin"`
	CreatedAt string `json:"created_at"`
}

// Flag is a post flag SetFlag changes; the value is the JSON field name.
type Flag string

// Post flags.
const (
	FlagTop    Flag = "is_top"
	FlagGood   Flag = "is_good"
	FlagSpam   Flag = "is_spam"
	FlagTodo   Flag = "is_todo"
	FlagLocked Flag = "is_locked"
	FlagHidden Flag = "is_hidden"
	FlagNotice Flag = "is_notice"
	FlagLiked  Flag = "is_liked"
	FlagAbuse  Flag = "is_abuse"
)

// AddPost stores a new post and returns it as the API will show it.
func (s *Server) AddPost(in PostInput) tucao.Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	return render(s.addPostLocked(in), s.clock.Now())
}

func (s *Server) addPostLocked(in PostInput) *postState {
	created := in.CreatedAt
	if created.IsZero() {
		created = s.clock.Now()
	}
	created = created.Truncate(time.Second)
	id := nextID(&s.lastPostID, created, s.rng.Int64N(1e8))
	if in.OpenID == "" {
		in.OpenID = "tucao_" + strconv.Itoa(len(s.users)+1)
	}
	if in.NickName == "" {
		in.NickName = "匿名用户"
	}
	if in.AvatarURL == "" {
		in.AvatarURL = defaultAvatar
	}
	extra := json.RawMessage("[]")
	if len(in.Extra) > 0 {
		extra = append(json.RawMessage(nil), in.Extra...)
	}
	images := in.Images
	if images == nil {
		images = []string{}
	}
	categories := in.Categories
	if categories == nil {
		categories = []string{}
	}
	stamp := tucao.FormatTime(created)
	ps := &postState{
		created: created,
		post: tucao.Post{
			ID:          strconv.FormatInt(id, 10),
			AvatarURL:   in.AvatarURL,
			NickName:    in.NickName,
			Content:     in.Content,
			OpenID:      in.OpenID,
			UserID:      s.userIDLocked(in.OpenID),
			User:        json.RawMessage("null"),
			IsAdmin:     in.IsAdmin,
			ImagesCount: len(images),
			CreatedAt:   stamp,
			UpdatedAt:   stamp,
			LastReplyAt: "1970-01-01 00:00:00",
			Images:      mustJSON(images),
			Replies:     json.RawMessage("[]"),
			Extra:       extra,
			RepliesAll:  json.RawMessage("[]"),
			Categories:  mustJSON(categories),
			FieldValues: json.RawMessage("[]"),
		},
	}
	s.posts = append(s.posts, ps)
	s.byID[ps.post.ID] = ps
	return ps
}

// nextID makes an id like Tucao's: unix seconds followed by eight more
// digits (153985339090723620 was created at 1539853390), always above the
// previous one.
func nextID(last *int64, t time.Time, low int64) int64 {
	id := t.Unix()*1e8 + low
	if id <= *last {
		id = *last + 1
	}
	*last = id
	return id
}

func (s *Server) userIDLocked(openid string) int64 {
	if id, ok := s.users[openid]; ok {
		return id
	}
	id := int64(len(s.users) + 1)
	s.users[openid] = id
	return id
}

// AddReply adds an answer from the product team (an admin reply) to a post.
func (s *Server) AddReply(postID, content string) (tucao.Post, error) {
	return s.AddReplyFrom(postID, ReplyInput{Content: content, NickName: "管理员", OpenID: "admin", IsAdmin: true})
}

// AddReplyFrom adds a reply to a post: reply_count, replies, replies_all,
// last_reply_at and updated_at change, and has_admin_reply when the reply
// is an admin's.
func (s *Server) AddReplyFrom(postID string, in ReplyInput) (tucao.Post, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.byID[postID]
	if !ok {
		return tucao.Post{}, fmt.Errorf("add reply: no post %s", postID)
	}
	s.addReplyLocked(ps, in)
	return render(ps, s.clock.Now()), nil
}

func (s *Server) addReplyLocked(ps *postState, in ReplyInput) {
	at := in.CreatedAt
	if at.IsZero() {
		at = s.clock.Now()
	}
	at = at.Truncate(time.Second)
	if in.AvatarURL == "" {
		in.AvatarURL = defaultAvatar
	}
	stamp := tucao.FormatTime(at)
	ps.replies = append(ps.replies, Reply{
		ID:        strconv.FormatInt(nextID(&s.lastReplyID, at, s.rng.Int64N(1e8)), 10),
		PostID:    ps.post.ID,
		Content:   in.Content,
		NickName:  in.NickName,
		AvatarURL: in.AvatarURL,
		OpenID:    in.OpenID,
		UserID:    s.userIDLocked(in.OpenID),
		IsAdmin:   in.IsAdmin,
		CreatedAt: stamp,
	})
	p := &ps.post
	p.ReplyCount = len(ps.replies)
	p.Replies = mustJSON(ps.replies)
	p.RepliesAll = p.Replies
	p.LastReplyAt = stamp
	p.UpdatedAt = stamp
	p.HasAdminReply = p.HasAdminReply || in.IsAdmin
}

// SetFlag sets or clears a flag of a post and bumps its updated_at.
func (s *Server) SetFlag(postID string, flag Flag, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.byID[postID]
	if !ok {
		return fmt.Errorf("set flag %s: no post %s", flag, postID)
	}
	p := &ps.post
	fields := map[Flag]*bool{
		FlagTop: &p.IsTop, FlagGood: &p.IsGood, FlagSpam: &p.IsSpam, FlagTodo: &p.IsTodo,
		FlagLocked: &p.IsLocked, FlagHidden: &p.IsHidden, FlagNotice: &p.IsNotice,
		FlagLiked: &p.IsLiked, FlagAbuse: &p.IsAbuse,
	}
	field, ok := fields[flag]
	if !ok {
		return fmt.Errorf("set flag %s: unknown flag", flag)
	}
	*field = on
	if flag == FlagLiked {
		if on {
			p.LikeCount++
		} else if p.LikeCount > 0 {
			p.LikeCount--
		}
	}
	p.UpdatedAt = tucao.FormatTime(s.clock.Now())
	return nil
}

// Posts returns every post as the API shows it, newest first.
func (s *Server) Posts() []tucao.Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	out := make([]tucao.Post, 0, len(s.posts))
	for i := len(s.posts) - 1; i >= 0; i-- {
		out = append(out, render(s.posts[i], now))
	}
	return out
}

// Post returns one post by id.
func (s *Server) Post(id string) (tucao.Post, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.byID[id]
	if !ok {
		return tucao.Post{}, false
	}
	return render(ps, s.clock.Now()), true
}

// Replies returns the replies of a post, oldest first.
func (s *Server) Replies(postID string) []Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.byID[postID]
	if !ok {
		return nil
	}
	return append([]Reply(nil), ps.replies...)
}

// render returns a copy of the post with its "time" text as of now.
func render(ps *postState, now time.Time) tucao.Post {
	p := ps.post
	p.Time = relativeTime(ps.created, now)
	return p
}

// relativeTime writes the post's age the way Tucao's "time" field does.
func relativeTime(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "刚刚"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "分钟前"
	case d < 24*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "小时前"
	case d < 30*24*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + "天前"
	}
	return t.In(time.FixedZone("CST", 8*3600)).Format("2006-01-02")
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("tucaotest: encode %T: %v", v, err))
	}
	return b
}
