package deadletter

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
)

func TestSubjectPatterns(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		valid, match     bool
	}{
		{"kefu.tucao.post.created", "kefu.tucao.post.created", true, true},
		{"kefu.tucao.post.*", "kefu.tucao.post.updated", true, true},
		{"kefu.tucao.>", "kefu.tucao.post.updated", true, true},
		{"kefu.tucao.>", "kefu.tucao", true, false},
		{"kefu.*.post", "kefu.tucao.post.created", true, false},
		{"kefu.wechat.>", "kefu.tucao.post.created", true, false},
		{"kefu..post", "", false, false},
		{"kefu.>.post", "", false, false},
		{"kefu.po*st", "", false, false},
	} {
		if got := validPattern(c.pattern); got != c.valid {
			t.Errorf("validPattern(%q) = %v", c.pattern, got)
		}
		if c.valid {
			if got := matches(c.pattern, c.subject); got != c.match {
				t.Errorf("matches(%q, %q) = %v", c.pattern, c.subject, got)
			}
		}
	}
}

func TestRedrivenMessage(t *testing.T) {
	l := &Letter{Seq: 42, Data: []byte(`{"id":"7"}`), Header: nats.Header{
		events.HeaderID:        {"tucao-7-1"},
		"ce-type":              {"kefu.tucao.post.created.v1"},
		bus.HeaderDLQSubject:   {events.SubjectPostCreated},
		bus.HeaderDLQConsumer:  {"feedback-posts"},
		bus.HeaderDLQReason:    {"rejected"},
		bus.HeaderDLQMsgID:     {"tucao-7-1"},
		events.HeaderMsgID:     {"dlq-KEFU_TUCAO-feedback-posts-3"},
		"Nats-Expected-Stream": {"KEFU_DLQ"},
	}}
	m, err := Redriven(l)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != events.SubjectPostCreated || string(m.Data) != `{"id":"7"}` {
		t.Errorf("redriven to %s with %s", m.Subject, m.Data)
	}
	want := nats.Header{
		events.HeaderID:       {"tucao-7-1"},
		"ce-type":             {"kefu.tucao.post.created.v1"},
		events.HeaderMsgID:    {"redrive-42-tucao-7-1"},
		HeaderRedriveConsumer: {"feedback-posts"},
	}
	if len(m.Header) != len(want) {
		t.Errorf("headers %v, want %v", m.Header, want)
	}
	for k, v := range want {
		if m.Header.Get(k) != v[0] {
			t.Errorf("%s = %q, want %q", k, m.Header.Get(k), v[0])
		}
	}
	if _, err := Redriven(&Letter{Seq: 1, Header: nats.Header{}}); err == nil {
		t.Error("a dead letter without its original subject was redriven")
	}
}
