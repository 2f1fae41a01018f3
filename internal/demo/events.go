package demo

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/pkg/events"
)

var printMu sync.Mutex

// printEvent prints one line for an event: when, its subject, and what it
// means (a subject alone tells a newcomer nothing).
func printEvent(out io.Writer, m *nats.Msg) {
	ev, err := events.DecodeSubject(m.Subject, m.Data)
	summary := ""
	if err == nil {
		switch e := ev.(type) {
		case events.SessionCreated:
			summary = e.OpenID + " is served by " + e.KfAccount
		case events.SessionSwitched:
			summary = e.OpenID + " transferred " + e.FromKfAccount + " → " + e.ToKfAccount
		case events.SessionClosed:
			summary = e.OpenID + " session closed by " + e.KfAccount
		case events.MessageReceived:
			summary = e.OpenID + " sent " + e.MsgType + " " + e.Content
		case events.EventReceived:
			summary = e.OpenID + " " + e.Event + " " + e.EventKey
		case events.WaitEstimated:
			summary = fmt.Sprintf("%s position %d, wait ~%ds (p90 %ds)", e.OpenID, e.Position, e.WaitSeconds, e.WaitP90Seconds)
		case events.QueueSnapshot:
			summary = fmt.Sprintf("%d waiting, %d agents online", e.WaitingCount, len(e.Agents))
		case events.Notification:
			summary = fmt.Sprintf("%s %s %s %q", e.OpenID, e.Kind, e.Outcome, e.Text)
		case events.FeedbackPost:
			summary = fmt.Sprintf("post %s by %s: %s (%d replies)", e.ID, e.OpenID, e.Content, e.ReplyCount)
		case events.SessionAbandoned:
			summary = fmt.Sprintf("%s left the queue after %ds (%s)", e.OpenID, e.WaitedSeconds, e.Reason)
		case events.QueueJoined:
			summary = e.OpenID + " joined the queue"
			if e.KfAccount != "" {
				summary += " for " + e.KfAccount
			}
		case events.AgentChosen:
			summary = fmt.Sprintf("%s chose %d (%s %s%s): %s", e.OpenID, e.Choice, e.Kind, e.Group, e.KfAccount, e.Outcome)
		}
	} else if len(m.Subject) > len(events.SubjectDLQPrefix) && m.Subject[:len(events.SubjectDLQPrefix)] == events.SubjectDLQPrefix {
		summary = "dead letter: " + m.Header.Get("Kefu-Dlq-Reason")
	}
	printMu.Lock()
	defer printMu.Unlock()
	fmt.Fprintf(out, "%s  %-34s %s\n", time.Now().Format("15:04:05.000"), m.Subject, summary)
}
