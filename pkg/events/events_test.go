package events_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	occurred = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	received = time.Date(2026, 11, 25, 10, 0, 1, 500_000_000, time.UTC)
	cst      = time.FixedZone("CST", 8*3600)
	wxMeta   = events.Meta{AppID: "wx2c2769f8efd9abc2", OccurredAt: occurred, ReceivedAt: received}
)

func source(event string, extra map[string]any) events.WeChatSource {
	raw := map[string]any{
		"ToUserName":   "gh_10f6c3c3ac5a",
		"FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
		"CreateTime":   "1795600800",
		"MsgType":      "event",
	}
	if event != "" {
		raw["Event"] = event
	}
	for k, v := range extra {
		raw[k] = v
	}
	return events.WeChatSource{OpenID: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", ToUserName: "gh_10f6c3c3ac5a", CreateTime: 1795600800, Raw: raw}
}

// golden lists one fully populated example of every event type and version;
// each has a file testdata/<name>.json.
var golden = []struct {
	name  string
	event events.Event
}{
	{"session_created.v1", events.SessionCreated{Meta: wxMeta, WeChatSource: source("kf_create_session", map[string]any{"KfAccount": "test1@test"}), KfAccount: "test1@test"}},
	{"session_switched.v1", events.SessionSwitched{Meta: wxMeta, WeChatSource: source("kf_switch_session", map[string]any{"FromKfAccount": "test1@test", "ToKfAccount": "test2@test"}), FromKfAccount: "test1@test", ToKfAccount: "test2@test"}},
	{"session_closed.v1", events.SessionClosed{Meta: wxMeta, WeChatSource: source("kf_close_session", map[string]any{"KfAccount": "test1@test"}), KfAccount: "test1@test"}},
	{"message_received.v1", events.MessageReceived{Meta: wxMeta, WeChatSource: source("", map[string]any{"MsgType": "text", "Content": "你好", "MsgId": "6054768590064713728"}),
		MsgType: "text", MsgID: "6054768590064713728", Content: "你好", PicURL: "https://mmbiz.qpic.cn/x.jpg", MediaID: "media_1", Format: "amr", Recognition: "你好",
		ThumbMediaID: "thumb_1", LocationX: "23.134521", LocationY: "113.358803", Scale: "20", Label: "广州市天河区", Title: "公众号", Description: "描述", URL: "https://example.com/a"}},
	{"event_received.v1", events.EventReceived{Meta: wxMeta, WeChatSource: source("subscribe", map[string]any{"EventKey": "qrscene_123", "Ticket": "TICKET", "ScanCodeInfo": map[string]any{"ScanType": "qrcode", "ScanResult": "1"}}),
		Event: "subscribe", EventKey: "qrscene_123", Ticket: "TICKET", Latitude: "23.137466", Longitude: "113.352425", Precision: "119.385040"}},
	{"queue_snapshot.v1", events.QueueSnapshot{Meta: wxMeta, WaitingCount: 150,
		Waiting: []events.WaitingCustomer{{OpenID: "o-wait-1", Since: occurred.Add(-3 * time.Minute), KfAccount: "test1@test", Position: 1}},
		Agents: []events.AgentStatus{{KfAccount: "test1@test", KfID: "1001", Status: 3, AutoAccept: 5, AcceptedCase: 1,
			Sessions: []events.AgentSession{{OpenID: "o-served-1", Since: occurred.Add(-10 * time.Minute)}}}}}},
	{"wait_estimated.v1", events.WaitEstimated{Meta: wxMeta, OpenID: "o-wait-1", Position: 3, WaitSeconds: 240, WaitP90Seconds: 540, Model: "kefu-v1", KfAccount: "test1@test", PositionInferred: true}},
	{"queue_joined.v1", events.QueueJoined{Meta: wxMeta, OpenID: "o-wait-1", KfAccount: "test1@test", MsgID: "6054768590064713728"}},
	{"session_abandoned.v1", events.SessionAbandoned{Meta: wxMeta, OpenID: "o-wait-1", WaitedSeconds: 310, Reason: events.AbandonLeft}},
	{"agent_chosen.v1", events.AgentChosen{Meta: wxMeta, OpenID: "o-wait-1", Choice: 2, Kind: events.ChosenKindGroup, Group: "billing",
		KfAccount: "test1@test", KfID: "1001", Outcome: events.ChoiceTransferred}},
	{"feedback_post.v1", events.FeedbackPost{Meta: events.Meta{ProductID: "1234", OccurredAt: occurred, ReceivedAt: received},
		ID: "153985339090723620", OpenID: "tucao_123", NickName: "#゛~", AvatarURL: "https://txc.qq.com/static/desktop/img/products/def-product-logo.png",
		Content: "999999", UserID: 1, HasAdminReply: true, IsAdmin: true, IsTop: true, IsGood: true, IsSpam: true, IsTodo: true, IsLocked: true,
		IsHidden: true, IsNotice: true, IsLiked: true, IsAbuse: true, ReplyCount: 1, LikeCount: 2, ImagesCount: 1, FaqID: 7,
		CreatedAt: time.Date(2018, 10, 18, 17, 3, 10, 0, cst), UpdatedAt: time.Date(2018, 10, 18, 17, 5, 0, 0, cst), LastReplyAt: time.Date(2018, 10, 18, 17, 5, 0, 0, cst),
		User: json.RawMessage(`{"id":1}`), Images: json.RawMessage(`["https://txc.qq.com/a.png"]`), Replies: json.RawMessage(`[{"id":"1","content":"谢谢反馈"}]`),
		RepliesAll: json.RawMessage(`[{"id":"1","content":"谢谢反馈"}]`), Categories: json.RawMessage(`[{"name":"bug"}]`), Extra: json.RawMessage(`{"order":"42"}`),
		FieldValues: json.RawMessage(`[{"field":"phone","value":"x"}]`), Raw: map[string]json.RawMessage{"time": json.RawMessage(`"21分钟前"`)}, Updated: true}},
	{"notification.v1", events.Notification{Meta: wxMeta, OpenID: "o-wait-1", Kind: events.NotifySessionCreated, CauseEventID: "wx-evt-o-wait-1-1795600800-kf_create_session-test1@test",
		Outcome: events.OutcomeFailed, ErrCode: 45015, ErrMsg: "response out of time limit or subscription is canceled", Text: "客服 小王 正在为您服务"}},
}

func TestGoldenFiles(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			got, err := events.Encode(g.event)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", g.name+".json")
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("encoding changed; a field was renamed, retyped or added.\n got: %s\nwant: %s", pretty.Bytes(), want)
			}

			// The stored file decodes, by subject, into the same value: old
			// payloads stay readable.
			decoded, err := events.DecodeSubject(g.event.EventSubject(), want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalise(t, decoded), normalise(t, g.event)) {
				t.Errorf("golden file decodes to %#v, want %#v", decoded, g.event)
			}
		})
	}
}

// normalise round-trips through JSON so that time zones and raw messages compare by value.
func normalise(t *testing.T, e events.Event) any {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Every field of every type must be exercised by its golden file, or a
// renamed field could slip through unnoticed.
func TestGoldenExamplesSetEveryField(t *testing.T) {
	for _, g := range golden {
		checkAllSet(t, g.name, reflect.ValueOf(g.event))
	}
}

func checkAllSet(t *testing.T, path string, v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			if v.Interface().(time.Time).IsZero() {
				t.Errorf("%s is zero", path)
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if f.Name == "ProductID" || f.Name == "AppID" {
				continue // one of the two is set, depending on the source
			}
			checkAllSet(t, path+"."+f.Name, v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("%s is empty", path)
			return
		}
		checkAllSet(t, path+"[0]", v.Index(0))
	default:
		if v.IsZero() {
			t.Errorf("%s is zero", path)
		}
	}
}

func TestDecodeSubjectPicksTheType(t *testing.T) {
	tests := []struct {
		subject string
		want    events.Event
	}{
		{events.SubjectSessionCreated, events.SessionCreated{}},
		{events.SubjectSessionSwitched, events.SessionSwitched{}},
		{events.SubjectSessionClosed, events.SessionClosed{}},
		{events.MessageSubject("image"), events.MessageReceived{}},
		{events.EventSubject("CLICK"), events.EventReceived{}},
		{events.SubjectQueueSnapshot, events.QueueSnapshot{}},
		{events.SubjectWaitEstimated, events.WaitEstimated{}},
		{events.SubjectSessionAbandoned, events.SessionAbandoned{}},
		{events.SubjectAgentChosen, events.AgentChosen{}},
		{events.SubjectQueueJoined, events.QueueJoined{}},
		{events.SubjectPostCreated, events.FeedbackPost{}},
		{events.SubjectPostUpdated, events.FeedbackPost{}},
		{events.SubjectNotifySent, events.Notification{}},
		{events.SubjectNotifyFailed, events.Notification{}},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			got, err := events.DecodeSubject(tt.subject, []byte(`{"future_field":1}`))
			if err != nil {
				t.Fatalf("unknown fields must be ignored: %v", err)
			}
			if reflect.TypeOf(got) != reflect.TypeOf(tt.want) {
				t.Errorf("got %T, want %T", got, tt.want)
			}
		})
	}
	if _, err := events.DecodeSubject("kefu.other", []byte(`{}`)); err == nil {
		t.Error("a subject outside the contract must be an error")
	}
	if _, err := events.DecodeSubject(events.SubjectSessionCreated, []byte(`{`)); err == nil {
		t.Error("malformed JSON must be an error")
	}
}

func TestSubjectsOfVariableEvents(t *testing.T) {
	tests := []struct {
		name string
		e    events.Event
		want string
	}{
		{"message type becomes the last token", events.MessageReceived{MsgType: "shortvideo"}, "kefu.wechat.message.shortvideo"},
		{"event names are lower-cased", events.EventReceived{Event: "SCAN"}, "kefu.wechat.event.scan"},
		{"wildcards and dots cannot escape the subject tree", events.EventReceived{Event: "a.>*b c"}, "kefu.wechat.event.other"},
		{"an empty name is other", events.MessageReceived{}, "kefu.wechat.message.other"},
		{"a dash is not a plain name", events.MessageReceived{MsgType: "mini-program"}, "kefu.wechat.message.other"},
		{"64 characters are kept", events.MessageReceived{MsgType: strings.Repeat("a", 64)}, "kefu.wechat.message." + strings.Repeat("a", 64)},
		{"65 characters are other", events.MessageReceived{MsgType: strings.Repeat("a", 65)}, "kefu.wechat.message.other"},
		{"a 5 KB event is other", events.EventReceived{Event: strings.Repeat("x", 5000)}, "kefu.wechat.event.other"},
		{"non-ASCII letters are other", events.EventReceived{Event: "订阅"}, "kefu.wechat.event.other"},
		{"first version of a post is created", events.FeedbackPost{}, events.SubjectPostCreated},
		{"later versions are updated", events.FeedbackPost{Updated: true}, events.SubjectPostUpdated},
		{"a failed notification", events.Notification{Outcome: events.OutcomeFailed}, events.SubjectNotifyFailed},
		{"a sent notification", events.Notification{Outcome: events.OutcomeSent}, events.SubjectNotifySent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.EventSubject(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDeduplicationIDs(t *testing.T) {
	if got := events.WeChatMessageID("6054768590064713728"); got != "wx-msg-6054768590064713728" {
		t.Errorf("message id %q", got)
	}
	if got := events.WeChatEventID("fromuser", 1399197672, "kf_switch_session", "test1@test", "test2@test"); got != "wx-evt-fromuser-1399197672-kf_switch_session-test1@test-test2@test" {
		t.Errorf("switch id %q", got)
	}
	if got := events.WeChatEventID("fromuser", 1399197672, "subscribe"); got != "wx-evt-fromuser-1399197672-subscribe" {
		t.Errorf("plain event id %q", got)
	}
	long := events.WeChatEventID(strings.Repeat("o", 300), 1399197672, "kf_create_session", "a@b")
	if !strings.HasPrefix(long, "wx-evt-sha256-") || len(long) != len("wx-evt-sha256-")+64 ||
		long != events.WeChatEventID(strings.Repeat("o", 300), 1399197672, "kf_create_session", "a@b") ||
		long == events.WeChatEventID(strings.Repeat("o", 300), 1399197672, "kf_create_session", "a@c") {
		t.Errorf("an over-long event id must be replaced by a deterministic hash: %q", long)
	}
	if got := events.WeChatEventID(strings.Repeat("o", 200), 1399197672, "subscribe"); len(got) > events.MaxIDLength || strings.Contains(got, "sha256") {
		t.Errorf("an id up to %d bytes is kept: %q", events.MaxIDLength, got)
	}
	if got := events.TucaoPostID("153985339090723620", time.Date(2018, 10, 18, 17, 3, 10, 0, cst)); got != "tucao-153985339090723620-1539853390" {
		t.Errorf("post id %q", got)
	}
	h := events.Headers(events.SubjectSessionCreated, "wx-evt-x", "kefu/ingest/wx1", received)
	want := map[string]string{
		"ce-specversion": "1.0", "ce-id": "wx-evt-x", "ce-type": "kefu.wechat.kf.session.created.v1",
		"ce-source": "kefu/ingest/wx1", "ce-time": "2026-11-25T10:00:01.5Z", "content-type": "application/json", "Nats-Msg-Id": "wx-evt-x",
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("headers %v, want %v", h, want)
	}
}
