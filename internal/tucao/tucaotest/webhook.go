package tucaotest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/kefu-io/kefu/internal/tucao"
)

// Webhook event types Tucao sends.
const (
	EventPostCreated  = "post.created"
	EventReplyCreated = "reply.created"
	EventWebhookTest  = "webhook.test"
)

// WebhookEvent is the body of a Tucao webhook POST:
// {"id","type","payload":{"post":{…}},"created_at"}; reply.created also
// carries the new reply in payload.reply.
type WebhookEvent struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	Payload   WebhookPayload `json:"payload"`
	CreatedAt string         `json:"created_at"`
}

// WebhookPayload is the payload of a WebhookEvent.
type WebhookPayload struct {
	Post  *tucao.Post `json:"post,omitempty"`
	Reply *Reply      `json:"reply,omitempty"`
}

// PushWebhook POSTs a webhook event about a post to url, the way Tucao does
// (JSON, no signature), and fails unless the answer is 2xx. postID may be
// empty for webhook.test.
func (s *Server) PushWebhook(url, event, postID string) error {
	return s.PushWebhookContext(context.Background(), url, event, postID)
}

// PushWebhookContext is PushWebhook with a context.
func (s *Server) PushWebhookContext(ctx context.Context, url, event, postID string) error {
	body, err := s.webhookBody(event, postID)
	if err != nil {
		return fmt.Errorf("push tucao webhook %s: %w", event, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("push tucao webhook %s: %w", event, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.webhooks.Do(req)
	if err != nil {
		return fmt.Errorf("push tucao webhook %s: %w", event, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("push tucao webhook %s: receiver answered %s", event, resp.Status)
	}
	return nil
}

func (s *Server) webhookBody(event, postID string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.lastEventID++
	ev := WebhookEvent{ID: strconv.FormatInt(s.lastEventID, 10), Type: event, CreatedAt: tucao.FormatTime(now)}
	if postID != "" {
		ps, ok := s.byID[postID]
		if !ok {
			return nil, fmt.Errorf("no post %s", postID)
		}
		p := render(ps, now)
		ev.Payload.Post = &p
		if event == EventReplyCreated && len(ps.replies) > 0 {
			r := ps.replies[len(ps.replies)-1]
			ev.Payload.Reply = &r
		}
	} else if event != EventWebhookTest {
		return nil, fmt.Errorf("event %s needs a post", event)
	}
	return json.Marshal(ev)
}
