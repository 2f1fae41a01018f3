package demo

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/pkg/events"
)

// The demo's event log says what each event means, also for the queue
// joins and agent choices: a subject alone tells a newcomer nothing.
func TestDemoLogDescribesJoinsAndChoices(t *testing.T) {
	for _, tt := range []struct {
		subject string
		ev      any
		want    string
	}{
		{events.SubjectQueueJoined, events.QueueJoined{OpenID: "o-1", KfAccount: "xiaoli@kefudemo"}, "o-1 joined the queue for xiaoli@kefudemo"},
		{events.SubjectQueueJoined, events.QueueJoined{OpenID: "o-2"}, "o-2 joined the queue"},
		{events.SubjectAgentChosen, events.AgentChosen{OpenID: "o-3", Choice: 2, Kind: events.ChosenKindAgent, KfAccount: "xiaowang@kefudemo", Outcome: events.ChoiceTransferred},
			"o-3 chose 2 (agent xiaowang@kefudemo): " + events.ChoiceTransferred},
	} {
		data, err := json.Marshal(tt.ev)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		printEvent(&out, &nats.Msg{Subject: tt.subject, Data: data})
		if line := strings.TrimSpace(out.String()); !strings.HasSuffix(line, tt.want) {
			t.Errorf("%s printed %q, want it to end in %q", tt.subject, line, tt.want)
		}
	}
}
