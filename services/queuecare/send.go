package queuecare

import (
	"context"
	"errors"
	"fmt"

	"github.com/kefu-io/kefu/internal/sendonce"
	"github.com/kefu-io/kefu/internal/wechat"
)

// outgoing is one message kefu sends a customer on its own account.
type outgoing struct {
	// key in kefu_notified: one per fact (a left queue case, a stale session).
	key    string
	kind   string // events.NotifyLeftQueue, events.NotifyStaleClosed
	cause  string // ce-id of the cause; the outcome event's id is "notify-" + cause
	appID  string
	openid string
	text   string
	// recorded is text as the outcome event shows it (secrets blanked);
	// "" means the same as text.
	recorded string
}

// sendOnce sends m unless it was sent (or given up) before, and publishes
// the outcome on KEFU_NOTIFY, through the ledger the notifier uses too
// (package sendonce). WeChat has no idempotency key, so a send whose
// outcome cannot be known (the process died during it, the answer was
// lost) is not repeated: a duplicate "you left the queue" counts against
// the customer's message limit (45047) and reads worse than a missing
// one. An error (certainly not sent, being sent by another process, the
// outcome not recorded yet) is for the caller to try again later.
func (s *Service) sendOnce(ctx context.Context, m outgoing) (outcome string, err error) {
	res, err := s.ledger.Send(ctx, sendonce.Message{Key: m.key, Kind: m.kind, Cause: m.cause, AppID: m.appID, OpenID: m.openid,
		Content: sendonce.Content{Text: m.text, Recorded: m.recorded}})
	if err != nil {
		return "", fmt.Errorf("%s message: %w", m.kind, err)
	}
	return res.Outcome, nil
}

func errCode(err error) int {
	var apiErr *wechat.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrCode
	}
	return 0
}
