package events_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// assertSameAsEncodingJSON checks the rule AppendEncode lives by: the bytes
// (or the error) of encoding/json, whatever the value.
func assertSameAsEncodingJSON(t *testing.T, e events.Event) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := events.Encode(e)
	if wantErr != nil {
		if err == nil || !strings.HasSuffix(err.Error(), ": "+wantErr.Error()) {
			t.Fatalf("%T: error %v, want encoding/json's %v", e, err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("%T: %v", e, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%T encodes differently from encoding/json\n got: %s\nwant: %s", e, got, want)
	}
	prefix := []byte(`prefix`)
	appended, err := events.AppendEncode(bytes.Clone(prefix), e)
	if err != nil || !bytes.Equal(appended, append(prefix, want...)) {
		t.Fatalf("%T: AppendEncode = %s, %v; want the prefix then %s", e, appended, err, want)
	}
}

func TestEncodeMatchesEncodingJSONOnGoldenValues(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) { assertSameAsEncodingJSON(t, g.event) })
	}
}

func TestEncodeMatchesEncodingJSONOnGoldenFiles(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", g.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			e, err := events.DecodeSubject(g.event.EventSubject(), data)
			if err != nil {
				t.Fatal(err)
			}
			assertSameAsEncodingJSON(t, e)
		})
	}
}

// wechatEvents puts s in every string of every WeChat event type: field
// values, raw keys, nested raw maps and repeated elements.
func wechatEvents(s string, n int64, at time.Time) []events.Event {
	meta := events.Meta{AppID: s, OccurredAt: at, ReceivedAt: at.Add(time.Duration(n))}
	raw := map[string]any{
		s:         s,
		"Content": s,
		"Nested":  map[string]any{s + "k": s, "List": []any{s, map[string]any{"x": s}, "b"}},
		"Empty":   map[string]any{},
		"":        "",
	}
	src := events.WeChatSource{OpenID: s, ToUserName: s, CreateTime: n, Raw: raw}
	return []events.Event{
		events.MessageReceived{Meta: meta, WeChatSource: src, MsgType: s, MsgID: s, Content: s, PicURL: s, MediaID: s, Format: s,
			Recognition: s, ThumbMediaID: s, LocationX: s, LocationY: s, Scale: s, Label: s, Title: s, Description: s, URL: s},
		events.MessageReceived{Meta: events.Meta{ProductID: s}, WeChatSource: events.WeChatSource{OpenID: s}, MsgType: s},
		events.EventReceived{Meta: meta, WeChatSource: src, Event: s, EventKey: s, Ticket: s, Latitude: s, Longitude: s, Precision: s},
		events.EventReceived{Meta: events.Meta{AppID: s, ProductID: s}, WeChatSource: src, Event: s},
		events.SessionCreated{Meta: meta, WeChatSource: src, KfAccount: s},
		events.SessionSwitched{Meta: meta, WeChatSource: src, FromKfAccount: s, ToKfAccount: s},
		events.SessionClosed{Meta: meta, WeChatSource: src, KfAccount: s},
	}
}

var trickyStrings = []string{
	"",
	"plain",
	"你好，世界",
	"<script>alert('x')</script> & more",
	"quote \" backslash \\ slash /",
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f",
	"line\u2028separator\u2029paragraph",
	"invalid \xff\xfe utf-8 \xc3\x28 \xe2\x82 end\xf0",
	"\xed\xa0\x80 surrogate half",
	"emoji 😀 and \U0010FFFF",
	"]]><![CDATA[",
}

func TestEncodeMatchesEncodingJSONOnTrickyStrings(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("CST", 8*3600), time.FixedZone("odd", -(3*3600 + 30*60 + 15))}
	for i, s := range trickyStrings {
		for _, loc := range zones {
			at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, loc)
			for _, e := range wechatEvents(s, int64(i)*-7919, at) {
				assertSameAsEncodingJSON(t, e)
			}
		}
	}
}

// Values encoding/json must handle (a raw value of another type, a nil raw
// map or slice, a time it refuses): the same bytes or the same error.
func TestEncodeFallsBackToEncodingJSON(t *testing.T) {
	tests := []struct {
		name string
		e    events.Event
	}{
		{"a nil raw map is null", events.MessageReceived{}},
		{"a nil raw value and a nil list are null", events.EventReceived{WeChatSource: events.WeChatSource{Raw: map[string]any{"a": nil, "b": []any(nil), "c": map[string]any(nil)}}}},
		{"raw numbers, booleans and other types are encoded by encoding/json", events.SessionCreated{WeChatSource: events.WeChatSource{Raw: map[string]any{
			"int": 42, "float": 1.5e300, "bool": true, "strings": []string{"<a>", "b"}, "raw": json.RawMessage(`{"x" : "<y>"}`), "time": time.Unix(0, 1).UTC()}}}},
		{"an unsupported raw value is encoding/json's error", events.SessionClosed{WeChatSource: events.WeChatSource{Raw: map[string]any{"ch": make(chan int)}}}},
		{"a year past 9999 is encoding/json's error", events.SessionSwitched{Meta: events.Meta{OccurredAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{"a negative year is encoding/json's error", events.MessageReceived{Meta: events.Meta{ReceivedAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{"a zone offset of 24 hours is encoding/json's error", events.SessionClosed{Meta: events.Meta{OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600))}}},
		{"a zone offset just under 24 hours is encoded", events.SessionClosed{Meta: events.Meta{OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("near", -(23*3600+59*60+59)))}}},
		{"a pointer is encoded by encoding/json", &events.MessageReceived{MsgType: "text"}},
		{"another event type is encoded by encoding/json", events.Notification{Text: "<b>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertSameAsEncodingJSON(t, tt.e) })
	}
}

func FuzzEncodeMatchesEncodingJSON(f *testing.F) {
	for i, s := range trickyStrings {
		f.Add(s, int64(i), int64(1795600800+i))
	}
	f.Fuzz(func(t *testing.T, s string, n, unix int64) {
		// Years 0..9999 only: outside them both encoders refuse (tested above).
		at := time.Unix(unix%253402300799, n%1e9).UTC()
		if at.Year() < 0 {
			at = at.AddDate(-at.Year(), 0, 0)
		}
		for _, e := range wechatEvents(s, n, at) {
			assertSameAsEncodingJSON(t, e)
		}
	})
}

func TestSetHeadersMatchesHeaders(t *testing.T) {
	at := time.Date(2026, 11, 25, 18, 0, 1, 500_000_000, time.FixedZone("CST", 8*3600))
	want := events.Headers(events.SubjectSessionCreated, "wx-evt-x", "kefu/ingest/wx1", at)
	h := map[string][]string{"X-Trace": {"t1"}}
	events.SetHeaders(h, events.SubjectSessionCreated, "wx-evt-x", "kefu/ingest/wx1", at)
	if len(h) != len(want)+1 || h["X-Trace"][0] != "t1" {
		t.Errorf("headers %v: want the %d contract headers added to the existing one", h, len(want))
	}
	for k, v := range want {
		if len(h[k]) != 1 || h[k][0] != v {
			t.Errorf("header %s = %q, want [%q]", k, h[k], v)
		}
	}
	// Values share a backing array: appending to one must not touch another.
	h[events.HeaderSpecVersion] = append(h[events.HeaderSpecVersion], "extra")
	if h[events.HeaderID][0] != "wx-evt-x" {
		t.Errorf("appending to %s changed %s to %q", events.HeaderSpecVersion, events.HeaderID, h[events.HeaderID][0])
	}
}
