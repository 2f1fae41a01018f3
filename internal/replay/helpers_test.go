package replay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/pkg/events"
)

// openBus starts a real server with kefu's WeChat and KF streams.
func openBus(t testing.TB) (*bus.Bus, *server.Server) {
	t.Helper()
	return bustest.Open(t, bustest.Streams(events.StreamWeChat, events.StreamKF))
}

// fixture is one message the tests publish on KEFU_WECHAT.
type fixture struct {
	subject string
	body    string
	header  nats.Header
}

func ceHeader(subject, id string, extra ...string) nats.Header {
	h := nats.Header{}
	for k, v := range events.Headers(subject, id, "kefu/test", time.Unix(1764064800, 0)) {
		h.Set(k, v)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return h
}

// wechatFixtures covers the shapes replay must keep intact: JSON bodies,
// a multi-line JSON body, a body that is not JSON, a repeated header.
// The last kf session event is not the stream's last message, so a
// filtered replay has to notice it is done before reaching the end.
var wechatFixtures = []fixture{
	{events.SubjectSessionCreated, `{"openid":"o1","kf_account":"alice@test","app_id":"wx1"}`, ceHeader(events.SubjectSessionCreated, "wx-evt-o1-1-kf_create_session-alice@test")},
	{"kefu.wechat.message.text", `{"openid":"o1","msg_type":"text","msg_id":"100","content":"你好 \"quoted\"\\ tab\t"}`, ceHeader("kefu.wechat.message.text", "wx-msg-100", "X-Trace", "t-1")},
	{events.SubjectSessionSwitched, `{"openid":"o1","from_kf_account":"alice@test","to_kf_account":"bob@test"}`, ceHeader(events.SubjectSessionSwitched, "wx-evt-o1-2-kf_switch_session-alice@test-bob@test")},
	{"kefu.wechat.event.subscribe", "{\n  \"openid\": \"o2\",\r\n  \"event\": \"subscribe\"\n}\n", ceHeader("kefu.wechat.event.subscribe", "wx-evt-o2-3-subscribe")},
	{"kefu.wechat.message.image", "\xff\x00not json", ceHeader("kefu.wechat.message.image", "wx-msg-101")},
	{events.SubjectSessionClosed, `{"openid":"o1","kf_account":"bob@test"}`, ceHeader(events.SubjectSessionClosed, "wx-evt-o1-4-kf_close_session-bob@test")},
	{"kefu.wechat.message.text", `{"openid":"o3","msg_type":"text","msg_id":"102","content":"hi"}`, ceHeader("kefu.wechat.message.text", "wx-msg-102", "X-Tag", "a", "X-Tag", "b")},
	{"kefu.wechat.event.click", `{"openid":"o3","event":"click","event_key":"MENU"}`, ceHeader("kefu.wechat.event.click", "wx-evt-o3-5-click")},
}

// publishFixtures stores the fixtures in order; their sequences are 1..n
// on a fresh stream.
func publishFixtures(t testing.TB, b *bus.Bus, fx []fixture) {
	t.Helper()
	for _, f := range fx {
		msg := &nats.Msg{Subject: f.subject, Data: []byte(f.body), Header: nats.Header{}}
		for k, v := range f.header {
			msg.Header[k] = append([]string(nil), v...)
		}
		if _, err := b.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
}

// storedMessages reads messages back from the stream with the direct get
// API, independently of replay.
func storedMessages(t testing.TB, b *bus.Bus, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := b.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// outLine is one printed JSON line.
type outLine struct {
	Stream     string          `json:"stream"`
	Seq        uint64          `json:"seq"`
	Subject    string          `json:"subject"`
	Time       string          `json:"time"`
	Headers    map[string]any  `json:"headers"`
	Data       json.RawMessage `json:"data"`
	DataBase64 *string         `json:"data_base64"`
}

func parseLines(t testing.TB, out string) []outLine {
	t.Helper()
	var lines []outLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l outLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %q is not a replay JSON object: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// checkLine asserts that a printed line is exactly the stored message.
func checkLine(t testing.TB, l outLine, stream string, m *jetstream.RawStreamMsg) {
	t.Helper()
	if l.Stream != stream || l.Seq != m.Sequence || l.Subject != m.Subject {
		t.Errorf("line %s/%d %s; want %s/%d %s", l.Stream, l.Seq, l.Subject, stream, m.Sequence, m.Subject)
	}
	at, err := time.Parse(time.RFC3339Nano, l.Time)
	if err != nil || !at.Equal(m.Time) {
		t.Errorf("seq %d: time %q; want the stored time %s", m.Sequence, l.Time, m.Time.UTC().Format(time.RFC3339Nano))
	}
	want := map[string]any{}
	for k, vs := range m.Header {
		if len(vs) == 1 {
			want[k] = vs[0]
			continue
		}
		arr := make([]any, len(vs))
		for i, v := range vs {
			arr[i] = v
		}
		want[k] = arr
	}
	if !reflect.DeepEqual(l.Headers, want) {
		t.Errorf("seq %d: headers %v; want %v", m.Sequence, l.Headers, want)
	}
	if json.Valid(m.Data) {
		var wantData bytes.Buffer
		_ = json.Compact(&wantData, m.Data)
		if l.DataBase64 != nil || !bytes.Equal(bytes.TrimSpace(l.Data), wantData.Bytes()) {
			t.Errorf("seq %d: data %s; want the JSON body %s", m.Sequence, l.Data, wantData.Bytes())
		}
		return
	}
	if l.Data != nil || l.DataBase64 == nil {
		t.Fatalf("seq %d: a body that is not JSON must come as data_base64 only", m.Sequence)
	}
	got, err := base64.StdEncoding.DecodeString(*l.DataBase64)
	if err != nil || !bytes.Equal(got, m.Data) {
		t.Errorf("seq %d: data_base64 decodes to %q; want %q", m.Sequence, got, m.Data)
	}
}

// syncBuffer is a writer a command's goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func consumerCount(t testing.TB, b *bus.Bus, stream string) int {
	t.Helper()
	s, err := b.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}
