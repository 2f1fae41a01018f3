package wechat

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// updateGolden is the package's only -update flag; other test files reuse it.
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// requiredCallbacks names the testdata/callbacks documents that must exist:
// every message type and event of the Official Account docs and 多客服.
var requiredCallbacks = []string{
	"message_text", "message_image", "message_voice", "message_voice_recognition",
	"message_video", "message_shortvideo", "message_location", "message_link",
	"message_file", "message_miniprogrampage",
	"event_subscribe", "event_subscribe_qrscene", "event_unsubscribe", "event_scan",
	"event_location", "event_click", "event_view", "event_scancode_push",
	"event_scancode_waitmsg", "event_pic_sysphoto", "event_pic_photo_or_album",
	"event_pic_weixin", "event_location_select", "event_view_miniprogram",
	"event_templatesendjobfinish", "event_masssendjobfinish",
	"event_kf_create_session", "event_kf_switch_session", "event_kf_close_session",
}

func callbackFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "callbacks", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no callback documents in testdata/callbacks (%v)", err)
	}
	return files
}

func TestParseCallbackGolden(t *testing.T) {
	files := callbackFiles(t)
	var names []string
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".xml")
		names = append(names, name)
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cb, err := ParseCallback(doc)
			if err != nil {
				t.Fatalf("ParseCallback: %v", err)
			}
			got, err := json.MarshalIndent(cb, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			goldenPath := strings.TrimSuffix(file, ".xml") + ".golden.json"
			if *updateGolden {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("read golden (run go test -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ParseCallback(%s) =\n%s\nwant (%s)\n%s", file, got, goldenPath, want)
			}

			// The golden file must decode back to the same Callback, so the
			// JSON form loses nothing (the MsgId string encoding included).
			var decoded Callback
			if err := json.Unmarshal(want, &decoded); err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			if !reflect.DeepEqual(&decoded, cb) {
				t.Errorf("golden decodes to %#v, want %#v", decoded, *cb)
			}
		})
	}
	for _, name := range requiredCallbacks {
		if !slices.Contains(names, name) {
			t.Errorf("testdata/callbacks/%s.xml is missing", name)
		}
	}
}

func TestParseCallbackFields(t *testing.T) {
	tests := []struct {
		name string
		file string
		want Callback // Fields are not compared
	}{
		{
			name: "text message carries MsgId and Content",
			file: "message_text",
			want: Callback{ToUserName: "gh_10f6c3c3ac5a", FromUserName: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", CreateTime: 1348831860, MsgType: "text", MsgID: 1234567890123456, Content: "this is a test"},
		},
		{
			name: "upper-case event names are lower-cased",
			file: "event_templatesendjobfinish",
			want: Callback{ToUserName: "gh_10f6c3c3ac5a", FromUserName: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", CreateTime: 1395658920, MsgType: "event", Event: "templatesendjobfinish"},
		},
		{
			name: "an event's MsgID (job id) is not taken for a message id",
			file: "event_masssendjobfinish",
			want: Callback{ToUserName: "gh_10f6c3c3ac5a", FromUserName: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", CreateTime: 1481013459, MsgType: "event", Event: "masssendjobfinish"},
		},
		{
			name: "kf_create_session names the agent",
			file: "event_kf_create_session",
			want: Callback{ToUserName: "gh_10f6c3c3ac5a", FromUserName: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", CreateTime: 1399197672, MsgType: "event", Event: "kf_create_session", KfAccount: "test1@test"},
		},
		{
			name: "kf_switch_session names both agents",
			file: "event_kf_switch_session",
			want: Callback{ToUserName: "gh_10f6c3c3ac5a", FromUserName: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", CreateTime: 1399197672, MsgType: "event", Event: "kf_switch_session", FromKfAccount: "test1@test", ToKfAccount: "test2@test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := os.ReadFile(filepath.Join("testdata", "callbacks", tt.file+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			cb, err := ParseCallback(doc)
			if err != nil {
				t.Fatalf("ParseCallback: %v", err)
			}
			cb.Fields = nil
			if !reflect.DeepEqual(*cb, tt.want) {
				t.Errorf("ParseCallback =\n%+v\nwant\n%+v", *cb, tt.want)
			}
		})
	}
}

func TestParseCallbackKeepsNestedFields(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("testdata", "callbacks", "event_masssendjobfinish.xml"))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := ParseCallback(doc)
	if err != nil {
		t.Fatal(err)
	}
	items, ok := cb.Fields["CopyrightCheckResult"].(map[string]any)["ResultList"].(map[string]any)["item"].([]any)
	if !ok || len(items) != 2 {
		t.Fatalf("CopyrightCheckResult/ResultList/item = %#v, want a list of 2", cb.Fields["CopyrightCheckResult"])
	}
	if url := items[1].(map[string]any)["OriginalArticleUrl"]; url != "Url_2" {
		t.Errorf("second item's OriginalArticleUrl = %v, want Url_2", url)
	}
	if cb.Fields["MsgID"] != "1000001625" {
		t.Errorf("Fields[MsgID] = %v, want the job id 1000001625", cb.Fields["MsgID"])
	}
}

// The 多客服 events of WeChat's documentation, verbatim (leading spaces included).
func TestParseCallbackDocumentedEvents(t *testing.T) {
	doc := "<xml>\n     <ToUserName><![CDATA[touser]]></ToUserName>\n     <FromUserName><![CDATA[fromuser]]></FromUserName>\n" +
		"     <CreateTime>1399197672</CreateTime>\n     <MsgType><![CDATA[event]]></MsgType>\n" +
		"     <Event><![CDATA[kf_close_session]]></Event>\n     <KfAccount><![CDATA[test1@test]]></KfAccount>\n </xml>"
	cb, err := ParseCallback([]byte(doc))
	if err != nil {
		t.Fatalf("ParseCallback: %v", err)
	}
	if cb.Event != "kf_close_session" || cb.KfAccount != "test1@test" || cb.FromUserName != "fromuser" || cb.CreateTime != 1399197672 {
		t.Errorf("ParseCallback = %+v", cb)
	}
}

func TestParseCallbackRejects(t *testing.T) {
	const head = "<ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>"
	tests := []struct {
		name string
		doc  string
	}{
		{"root must be xml", "<msg>" + head + "<CreateTime>1</CreateTime><MsgType>text</MsgType></msg>"},
		{"ToUserName is required", "<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>"},
		{"FromUserName is required", "<xml><ToUserName>gh_1</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>"},
		{"CreateTime is required", "<xml>" + head + "<MsgType>text</MsgType></xml>"},
		{"MsgType is required", "<xml>" + head + "<CreateTime>1</CreateTime></xml>"},
		{"MsgType must not be blank", "<xml>" + head + "<CreateTime>1</CreateTime><MsgType> </MsgType></xml>"},
		{"CreateTime must be an integer", "<xml>" + head + "<CreateTime>yesterday</CreateTime><MsgType>text</MsgType></xml>"},
		{"MsgId must be an integer", "<xml>" + head + "<CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>x</MsgId></xml>"},
		{"MsgId beyond uint64 is refused", "<xml>" + head + "<CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>18446744073709551616</MsgId></xml>"},
		{"MsgId is not negative", "<xml>" + head + "<CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>-1</MsgId></xml>"},
		{"an event needs an Event", "<xml>" + head + "<CreateTime>1</CreateTime><MsgType>event</MsgType></xml>"},
		{"a required field may not repeat", "<xml>" + head + "<ToUserName>gh_2</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>"},
		{"a required field may not have children", "<xml>" + head + "<CreateTime><a>1</a></CreateTime><MsgType>text</MsgType></xml>"},
		{"DOCTYPE is refused", `<!DOCTYPE xml [<!ENTITY x "gh_1">]><xml><ToUserName>&x;</ToUserName></xml>`},
		{"not XML at all", "success"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := ParseCallback([]byte(tt.doc))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseCallback = (%+v, %v), want ErrMalformed", cb, err)
			}
		})
	}
}

// WeChat documents MsgId as a 64-bit integer; the unsigned range is
// accepted whole, and the JSON form keeps every digit.
func TestParseCallbackMsgIdIsUnsigned64Bit(t *testing.T) {
	doc := "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>18446744073709551615</MsgId></xml>"
	cb, err := ParseCallback([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cb.MsgID != 18446744073709551615 {
		t.Fatalf("MsgID = %d", cb.MsgID)
	}
	j, err := json.Marshal(cb)
	if err != nil || !strings.Contains(string(j), `"msg_id":"18446744073709551615"`) {
		t.Fatalf("JSON %s: %v", j, err)
	}
}

func BenchmarkParseCallback(b *testing.B) {
	for _, name := range []string{"message_text", "event_kf_switch_session", "event_masssendjobfinish"} {
		doc, err := os.ReadFile(filepath.Join("testdata", "callbacks", name+".xml"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if _, err := ParseCallback(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
