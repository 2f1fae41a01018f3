package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/tucao"
)

// Webhook limits. Tucao's pushes are a post with its newest reply, a few
// KiB; the webhook is only a hint (below), so nothing larger is worth
// reading from a stranger.
const (
	// WebhookPath is where the webhook is served when no secret path
	// segment is configured.
	WebhookPath = "/tucao/webhook"
	// MaxWebhookBody is the largest webhook body accepted (64 KiB); a
	// larger one is answered 413 and triggers nothing.
	MaxWebhookBody = 64 << 10
	// WebhookPollEvery is the least time between two polls triggered by
	// webhooks. Anyone can post to the webhook, and without this a stranger
	// could spend the product's whole request budget (100 a minute) on
	// polls, starving the scheduled ones. A webhook inside the window adds
	// no poll: the post it announces comes with the poll already asked for
	// if that one has not read the page yet, else with the next scheduled
	// poll (KEFU_TUCAO_POLL_INTERVAL) at the latest.
	WebhookPollEvery = 10 * time.Second
)

// webhookTypes are the webhook types Tucao documents: the only values of
// the type label besides "other", so a stranger's random types cannot
// create metric series.
var webhookTypes = map[string]bool{"post.created": true, "reply.created": true, "webhook.test": true}

func webhookTypeLabel(t string) string {
	if webhookTypes[t] {
		return t
	}
	return "other"
}

// Kick asks for a poll now (a webhook arrived), at most once every
// WebhookPollEvery; it reports whether it did. A kick while a poll runs
// asks for one more after it.
func (p *TucaoPoller) Kick() bool {
	if !p.kicks.allow(p.now()) {
		p.metrics.kicks.WithLabelValues("throttled").Inc()
		return false
	}
	p.metrics.kicks.WithLabelValues("polled").Inc()
	p.loop.Kick()
	return true
}

// kickLimiter lets one kick through per window; the others are dropped,
// not deferred, so a flood costs at most one poll per window.
type kickLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  time.Time
}

func (l *kickLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		return false
	}
	l.last = now
	return true
}

// WebhookHandler accepts Tucao's webhook pushes (post.created,
// reply.created, webhook.test). Tucao does not sign them, so the body is
// only a hint: it triggers a poll through the signed API (at most one per
// WebhookPollEvery), which publishes the same events polling would, and
// nothing of the body reaches the bus. The post id it names
// (payload.post.id) is queued for that poll to re-read through the API
// (see Hint), so a reply on a post older than the rescan window is seen.
// A body over MaxWebhookBody is answered 413, one that is not a JSON
// object with a "type", or whose post id is not a Tucao id, 400, a method
// other than POST 405; errors are problem details (docs/http-api.md).
func (p *TucaoPoller) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			httpapi.WriteProblem(w, http.StatusMethodNotAllowed, "POST only")
			return
		}
		tooLarge := fmt.Sprintf("webhook body over %d bytes", MaxWebhookBody)
		if r.ContentLength > MaxWebhookBody {
			httpapi.WriteProblem(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBody+1))
		if err != nil {
			httpapi.WriteProblem(w, http.StatusBadRequest, "cannot read body")
			return
		}
		if len(body) > MaxWebhookBody {
			httpapi.WriteProblem(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		var hook struct {
			Type    string `json:"type"`
			Payload struct {
				Post struct {
					ID json.RawMessage `json:"id"`
				} `json:"post"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(body, &hook); err != nil || hook.Type == "" {
			httpapi.WriteProblem(w, http.StatusBadRequest, "malformed webhook JSON: want {\"id\",\"type\",\"payload\"}", httpapi.Type(httpapi.InvalidParameter))
			return
		}
		postID, ok := hintedID(hook.Payload.Post.ID)
		if !ok {
			httpapi.WriteProblem(w, http.StatusBadRequest, "malformed webhook JSON: payload.post.id must be a Tucao post id (decimal digits)", httpapi.Param("payload.post.id"))
			return
		}
		p.metrics.webhooks.WithLabelValues(webhookTypeLabel(hook.Type)).Inc()
		if hook.Type != "webhook.test" {
			if postID != "" {
				_ = p.Hint(postID) // checked by hintedID
			}
			p.Kick()
		}
		httpapi.WriteJSONBytes(w, http.StatusOK, []byte(`{"ok":true}`+"\n"))
	})
}

// hintedID reads payload.post.id: absent or null gives "", a Tucao id (a
// JSON string or number of decimal digits that fits in int64) gives the
// id, anything else is refused.
func hintedID(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	id := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", false
		}
	}
	if _, err := tucao.ParseID(id); err != nil {
		return "", false
	}
	return id, true
}

// RegisterWebhook serves the webhook on mux. Without a secret it is served
// at WebhookPath. With one (KEFU_TUCAO_WEBHOOK_SECRET) it is served only at
// WebhookPath/<secret>, and WebhookPath itself and every other segment
// answer 404, as if nothing were there: a stranger who does not know the
// URL cannot even make kefu poll. The segment is compared in constant time
// (of digests, so not even its length leaks).
func (p *TucaoPoller) RegisterWebhook(mux *http.ServeMux, secret string) {
	if secret == "" {
		mux.Handle(WebhookPath, p.WebhookHandler())
		return
	}
	want := sha256.Sum256([]byte(secret))
	hook := p.WebhookHandler()
	// Registered explicitly so that ServeMux does not redirect
	// /tucao/webhook to /tucao/webhook/, hinting that something is there.
	mux.Handle(WebhookPath, http.NotFoundHandler())
	mux.Handle(WebhookPath+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(strings.TrimPrefix(r.URL.Path, WebhookPath+"/")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			http.NotFound(w, r)
			return
		}
		hook.ServeHTTP(w, r)
	}))
}
