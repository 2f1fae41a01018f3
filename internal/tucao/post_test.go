package tucao

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedPosts returns the data array of the example in Tucao's API documentation, raw and decoded.
func seedPosts(t *testing.T) ([]json.RawMessage, []Post) {
	t.Helper()
	var env struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(readTestdata(t, "page_seed.json"), &env); err != nil {
		t.Fatal(err)
	}
	posts := make([]Post, len(env.Data))
	for i, raw := range env.Data {
		if err := json.Unmarshal(raw, &posts[i]); err != nil {
			t.Fatalf("decode seed post %d: %v", i, err)
		}
	}
	return env.Data, posts
}

func TestPostDecodesTheDocumentedExample(t *testing.T) {
	_, posts := seedPosts(t)
	p := posts[0]
	checks := []struct {
		field     string
		got, want any
	}{
		{"id", p.ID, "153985339090723620"},
		{"IDInt", p.IDInt(), int64(153985339090723620)},
		{"has_admin_reply", p.HasAdminReply, true},
		{"nick_name", p.NickName, "#゛~"},
		{"content", p.Content, "999999"},
		{"openid", p.OpenID, "tucao_123"},
		{"user_id", p.UserID, int64(1)},
		{"user", string(p.User), "null"},
		{"is_admin", p.IsAdmin, true},
		{"is_top", p.IsTop, false},
		{"time", p.Time, "21分钟前"},
		{"images", string(p.Images), "[]"},
		{"extras", len(p.Extras), 0},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
	created, err := p.CreatedTime()
	if err != nil {
		t.Fatal(err)
	}
	// 17:03:10 in Shanghai is 09:03:10 UTC; the id starts with that unix time.
	if want := time.Date(2018, 10, 18, 9, 3, 10, 0, time.UTC); !created.Equal(want) {
		t.Errorf("CreatedTime = %v, want %v", created, want)
	}
	if !strings.HasPrefix(p.ID, "1539853390") || created.Unix() != 1539853390 {
		t.Errorf("created_at %v (unix %d) does not match id %s", created, created.Unix(), p.ID)
	}
	if lr, err := p.LastReplyTime(); err != nil || !lr.IsZero() {
		t.Errorf("LastReplyTime of the epoch placeholder = %v, %v; want zero time", lr, err)
	}
}

func TestPostMarshalReproducesTheDocumentedPost(t *testing.T) {
	raws, posts := seedPosts(t)
	for i, p := range posts {
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var want, got map[string]any
		if err := json.Unmarshal(raws[i], &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("post %d re-encoded differs:\n got %s\nwant %s", i, out, raws[i])
		}
	}
}

func TestPostRoundTripKeepsUnknownFields(t *testing.T) {
	var env struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(readTestdata(t, "page_lenient.json"), &env); err != nil {
		t.Fatal(err)
	}
	var p Post
	if err := json.Unmarshal(env.Data[0], &p); err != nil {
		t.Fatal(err)
	}
	if got := string(p.Extras["post_type"]); got != "2" {
		t.Errorf(`Extras["post_type"] = %q, want "2"`, got)
	}
	if _, ok := p.Extras["topic"]; !ok {
		t.Error(`Extras has no "topic"`)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Post
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Errorf("round trip changed the post:\n got %+v\nwant %+v", back, p)
	}
	var generic map[string]json.RawMessage
	if err := json.Unmarshal(out, &generic); err != nil {
		t.Fatal(err)
	}
	if string(generic["topic"]) != `{"id":"9","title":"新版本反馈"}` {
		t.Errorf("topic written back as %s", generic["topic"])
	}
}

func TestPostKnownFieldWinsOverExtrasCopy(t *testing.T) {
	p := Post{ID: "7", Extras: map[string]json.RawMessage{"id": json.RawMessage(`"8"`), "x": json.RawMessage(`1`)}}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), `"id":`) != 1 || !strings.Contains(string(out), `"id":"7"`) || !strings.Contains(string(out), `"x":1`) {
		t.Errorf("Marshal = %s", out)
	}
}

func TestPostDecodeIsLenientAboutRepresentation(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		check func(Post) bool
	}{
		{"a numeric id is accepted and kept as text", `{"id":153985339090723620}`, func(p Post) bool { return p.ID == "153985339090723620" }},
		{"an id with a plus sign is normalised", `{"id":"+42"}`, func(p Post) bool { return p.ID == "42" }},
		{"flags may be 0 and 1", `{"id":"1","is_top":1,"is_spam":0}`, func(p Post) bool { return p.IsTop && !p.IsSpam }},
		{"flags may be quoted", `{"id":"1","is_top":"1","is_good":"false"}`, func(p Post) bool { return p.IsTop && !p.IsGood }},
		{"counts may be quoted", `{"id":"1","reply_count":"3"}`, func(p Post) bool { return p.ReplyCount == 3 }},
		{"a whole float is an integer", `{"id":"1","like_count":2.0}`, func(p Post) bool { return p.LikeCount == 2 }},
		{"null means the zero value", `{"id":"1","content":null,"user_id":null,"is_admin":null}`, func(p Post) bool { return p.Content == "" && p.UserID == 0 && !p.IsAdmin }},
		{"escaped strings are unescaped", `{"id":"1","content":"a\"b\n<c> \u4f60"}`, func(p Post) bool { return p.Content == "a\"b\n<c> 你" }},
		{"a numeric openid is kept as text", `{"id":"1","openid":12345}`, func(p Post) bool { return p.OpenID == "12345" }},
		{"raw fields keep any shape", `{"id":"1","extra":{"k":"v"},"images":"a.png"}`, func(p Post) bool {
			return string(p.Extra) == `{"k":"v"}` && string(p.Images) == `"a.png"`
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Post
			if err := json.Unmarshal([]byte(tt.json), &p); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !tt.check(p) {
				t.Errorf("decoded %+v", p)
			}
		})
	}
}

func TestPostDecodeRejectsWhatCannotBeRepaired(t *testing.T) {
	tests := []struct{ name, json string }{
		{"an id that is not decimal", `{"id":"abc"}`},
		{"an id beyond int64", `{"id":"99999999999999999999"}`},
		{"a negative id", `{"id":"-5"}`},
		{"a zero id", `{"id":"0"}`},
		{"an id that is an object", `{"id":{}}`},
		{"a fractional count", `{"id":"1","reply_count":3.5}`},
		{"a flag that is a word", `{"id":"1","is_top":"yes"}`},
		{"a flag that is 2", `{"id":"1","is_top":2}`},
		{"content that is an object", `{"id":"1","content":{}}`},
		{"not an object", `[]`},
		{"null", `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Post
			if err := json.Unmarshal([]byte(tt.json), &p); err == nil {
				t.Errorf("Unmarshal(%s) succeeded: %+v", tt.json, p)
			}
		})
	}
}

func TestTimesAreShanghaiWallClock(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Time
	}{
		{"midnight in Shanghai is 16:00 UTC the day before", "2018-01-23 00:00:00", time.Date(2018, 1, 22, 16, 0, 0, 0, time.UTC)},
		{"no daylight saving in summer", "2018-07-01 12:00:00", time.Date(2018, 7, 1, 4, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTime(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("ParseTime(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if back := FormatTime(got.UTC()); back != tt.in {
				t.Errorf("FormatTime = %q, want %q", back, tt.in)
			}
		})
	}
	if _, err := ParseTime("2018-10-18T17:03:10Z"); err == nil {
		t.Error("ParseTime accepted RFC 3339")
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"YYYYMMDD is a day", "20180123", false},
		{"dashes are not accepted", "2018-01-23", true},
		{"a month 13 is not a day", "20181301", true},
		{"a short date is not accepted", "2018123", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDate(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseDate(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && FormatDate(got) != tt.in {
				t.Errorf("FormatDate(ParseDate(%q)) = %q", tt.in, FormatDate(got))
			}
		})
	}
}
