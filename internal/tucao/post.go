package tucao

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TimeLayout is how Tucao writes created_at, updated_at and last_reply_at:
// wall-clock time in Asia/Shanghai, without a zone.
const TimeLayout = "2006-01-02 15:04:05"

// DateLayout is the format of the from/to query parameters.
const DateLayout = "20060102"

// shanghai is China Standard Time. A fixed zone, not
// time.LoadLocation("Asia/Shanghai"): China has no daylight saving time and
// a fixed zone works in containers without tzdata.
var shanghai = time.FixedZone("CST", 8*3600)

// neverReplied is last_reply_at of a post without replies.
const neverReplied = "1970-01-01 00:00:00"

// ParseTime parses a Tucao timestamp ("2006-01-02 15:04:05", Asia/Shanghai).
func ParseTime(s string) (time.Time, error) {
	t, err := time.ParseInLocation(TimeLayout, s, shanghai)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse tucao time %q: %w", s, err)
	}
	return t, nil
}

// FormatTime formats t the way Tucao does, in Asia/Shanghai.
func FormatTime(t time.Time) string { return t.In(shanghai).Format(TimeLayout) }

// ParseDate parses a from/to day ("20060102") and returns its first instant
// in Asia/Shanghai.
func ParseDate(s string) (time.Time, error) {
	if len(s) != len(DateLayout) {
		return time.Time{}, fmt.Errorf("parse tucao date %q: want YYYYMMDD", s)
	}
	t, err := time.ParseInLocation(DateLayout, s, shanghai)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse tucao date %q: %w", s, err)
	}
	return t, nil
}

// FormatDate formats t as a from/to day in Asia/Shanghai.
func FormatDate(t time.Time) string { return t.In(shanghai).Format(DateLayout) }

// Post is one piece of feedback, with every field of the data in Tucao's API documentation
// dictionary. The fields whose shape varies between products and versions
// (images, replies, extra, …) stay raw JSON so nothing is lost, and fields
// the dictionary does not list are kept in Extras; MarshalJSON writes all of
// them back.
//
// Decoding is lenient about representation (a number sent as a string, a
// flag sent as 0/1, null for an empty value) because losing a post to a
// cosmetic change is worse than accepting it; it is strict about the id,
// which must be a positive decimal that fits in int64 since it drives the
// pagination cursor.
type Post struct {
	ID            string          `json:"id"` // decimal string, newer posts have larger ids
	HasAdminReply bool            `json:"has_admin_reply"`
	AvatarURL     string          `json:"avatar_url"`
	NickName      string          `json:"nick_name"`
	Content       string          `json:"content"`
	OpenID        string          `json:"openid"`  // the id our site passed when the user posted
	UserID        int64           `json:"user_id"` // Tucao's own user id
	User          json.RawMessage `json:"user"`
	IsAdmin       bool            `json:"is_admin"`
	IsTop         bool            `json:"is_top"`
	IsGood        bool            `json:"is_good"`
	IsSpam        bool            `json:"is_spam"`
	IsTodo        bool            `json:"is_todo"`
	IsLocked      bool            `json:"is_locked"`
	IsHidden      bool            `json:"is_hidden"`
	IsNotice      bool            `json:"is_notice"`
	IsLiked       bool            `json:"is_liked"`
	IsAbuse       bool            `json:"is_abuse"`
	ReplyCount    int             `json:"reply_count"`
	LikeCount     int             `json:"like_count"`
	ImagesCount   int             `json:"images_count"`
	CreatedAt     string          `json:"created_at"`    // TimeLayout, Asia/Shanghai
	Time          string          `json:"time"`          // human text such as "21分钟前"
	UpdatedAt     string          `json:"updated_at"`    // changes with replies and flags
	LastReplyAt   string          `json:"last_reply_at"` // "1970-01-01 00:00:00" when none
	Images        json.RawMessage `json:"images"`
	Replies       json.RawMessage `json:"replies"`
	Extra         json.RawMessage `json:"extra"` // the site's customInfo
	FAQID         int64           `json:"faq_id"`
	RepliesAll    json.RawMessage `json:"replies_all"`
	Categories    json.RawMessage `json:"categories"`
	FieldValues   json.RawMessage `json:"field_values"`

	// Extras holds the fields this type does not know, verbatim.
	Extras map[string]json.RawMessage `json:"-"`
}

// IDInt returns the id as a number, or 0 when it is not a valid id (a
// decoded Post always has a valid one).
func (p Post) IDInt() int64 {
	n, err := parseID(p.ID)
	if err != nil {
		return 0
	}
	return n
}

// CreatedTime parses created_at.
func (p Post) CreatedTime() (time.Time, error) { return ParseTime(p.CreatedAt) }

// UpdatedTime parses updated_at.
func (p Post) UpdatedTime() (time.Time, error) { return ParseTime(p.UpdatedAt) }

// LastReplyTime parses last_reply_at; a post without replies (Tucao writes
// the unix epoch, or nothing) gives the zero time.
func (p Post) LastReplyTime() (time.Time, error) {
	if p.LastReplyAt == "" || p.LastReplyAt == neverReplied {
		return time.Time{}, nil
	}
	return ParseTime(p.LastReplyAt)
}

// ParseID checks that s is a Tucao post id as the API writes it: decimal
// digits only (no sign, no spaces) of a positive int64.
func ParseID(s string) (int64, error) {
	if len(s) == 0 || len(s) > 19 || !isDigits(s) {
		return 0, fmt.Errorf("post id %.24q is not a decimal int64", s)
	}
	return parseID(s)
}

// parseID accepts a positive decimal int64 and nothing else.
func parseID(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("post id %q is not a decimal int64", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("post id %q is not positive", s)
	}
	return n, nil
}

// postFields lists the known fields in the order of Tucao's API documentation, which MarshalJSON
// keeps, with how to read and write each.
var postFields = []struct {
	name string
	get  func(p *Post) any
	set  func(p *Post, raw json.RawMessage) error
}{
	{"id", func(p *Post) any { return p.ID }, func(p *Post, r json.RawMessage) error { return decodeID(r, &p.ID) }},
	{"has_admin_reply", func(p *Post) any { return p.HasAdminReply }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.HasAdminReply) }},
	{"avatar_url", func(p *Post) any { return p.AvatarURL }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.AvatarURL) }},
	{"nick_name", func(p *Post) any { return p.NickName }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.NickName) }},
	{"content", func(p *Post) any { return p.Content }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.Content) }},
	{"openid", func(p *Post) any { return p.OpenID }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.OpenID) }},
	{"user_id", func(p *Post) any { return p.UserID }, func(p *Post, r json.RawMessage) error { return decodeInt64(r, &p.UserID) }},
	{"user", func(p *Post) any { return rawOrNull(p.User) }, func(p *Post, r json.RawMessage) error { return decodeRaw(r, &p.User) }},
	{"is_admin", func(p *Post) any { return p.IsAdmin }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsAdmin) }},
	{"is_top", func(p *Post) any { return p.IsTop }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsTop) }},
	{"is_good", func(p *Post) any { return p.IsGood }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsGood) }},
	{"is_spam", func(p *Post) any { return p.IsSpam }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsSpam) }},
	{"is_todo", func(p *Post) any { return p.IsTodo }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsTodo) }},
	{"is_locked", func(p *Post) any { return p.IsLocked }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsLocked) }},
	{"is_hidden", func(p *Post) any { return p.IsHidden }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsHidden) }},
	{"is_notice", func(p *Post) any { return p.IsNotice }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsNotice) }},
	{"is_liked", func(p *Post) any { return p.IsLiked }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsLiked) }},
	{"is_abuse", func(p *Post) any { return p.IsAbuse }, func(p *Post, r json.RawMessage) error { return decodeBool(r, &p.IsAbuse) }},
	{"reply_count", func(p *Post) any { return p.ReplyCount }, func(p *Post, r json.RawMessage) error { return decodeInt(r, &p.ReplyCount) }},
	{"like_count", func(p *Post) any { return p.LikeCount }, func(p *Post, r json.RawMessage) error { return decodeInt(r, &p.LikeCount) }},
	{"images_count", func(p *Post) any { return p.ImagesCount }, func(p *Post, r json.RawMessage) error { return decodeInt(r, &p.ImagesCount) }},
	{"created_at", func(p *Post) any { return p.CreatedAt }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.CreatedAt) }},
	{"time", func(p *Post) any { return p.Time }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.Time) }},
	{"updated_at", func(p *Post) any { return p.UpdatedAt }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.UpdatedAt) }},
	{"last_reply_at", func(p *Post) any { return p.LastReplyAt }, func(p *Post, r json.RawMessage) error { return decodeString(r, &p.LastReplyAt) }},
	{"images", func(p *Post) any { return rawOrNull(p.Images) }, func(p *Post, r json.RawMessage) error { return decodeRaw(r, &p.Images) }},
	{"replies", func(p *Post) any { return rawOrNull(p.Replies) }, func(p *Post, r json.RawMessage) error { return decodeRaw(r, &p.Replies) }},
	{"extra", func(p *Post) any { return rawOrNull(p.Extra) }, func(p *Post, r json.RawMessage) error { return decodeRaw(r, &p.Extra) }},
	{"faq_id", func(p *Post) any { return p.FAQID }, func(p *Post, r json.RawMessage) error { return decodeInt64(r, &p.FAQID) }},
	{"replies_all", func(p *Post) any { return rawOrNull(p.RepliesAll) }, func(p *Post, r json.RawMessage) error { return decodeRaw(r, &p.RepliesAll) }},
	{"categories", func(p *Post) any { return rawOrNull(p.Categories) }, func(p *Post, r json.RawMessage) error { return decodeRaw(r, &p.Categories) }},
	{"field_values", func(p *Post) any { return rawOrNull(p.FieldValues) }, func(p *Post, r json.RawMessage) error { return decodeRaw(r, &p.FieldValues) }},
}

var postFieldIndex = func() map[string]int {
	m := make(map[string]int, len(postFields))
	for i, f := range postFields {
		m[f.name] = i
	}
	return m
}()

// UnmarshalJSON decodes a post object, keeping unknown fields in Extras.
func (p *Post) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("decode tucao post: %w", err)
	}
	if fields == nil {
		return errors.New("decode tucao post: not an object")
	}
	*p = Post{}
	for name, raw := range fields {
		i, known := postFieldIndex[name]
		if !known {
			if p.Extras == nil {
				p.Extras = make(map[string]json.RawMessage)
			}
			p.Extras[name] = compact(raw)
			continue
		}
		if err := postFields[i].set(p, raw); err != nil {
			return fmt.Errorf("decode tucao post field %q: %w", name, err)
		}
	}
	return nil
}

// MarshalJSON writes the known fields in the order of Tucao's API documentation, then Extras in
// key order. Empty raw fields are written as null.
func (p Post) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	write := func(name string, v any) error {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		key, _ := json.Marshal(name)
		buf.Write(key)
		buf.WriteByte(':')
		// Raw values are written as they came (compacted), not through
		// json.Marshal, which would HTML-escape their strings and so make
		// a decode-encode round trip change them.
		if raw, ok := v.(json.RawMessage); ok {
			if err := json.Compact(&buf, raw); err != nil {
				return fmt.Errorf("encode tucao post field %q: %w", name, err)
			}
			return nil
		}
		val, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode tucao post field %q: %w", name, err)
		}
		buf.Write(val)
		return nil
	}
	for _, f := range postFields {
		if err := write(f.name, f.get(&p)); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Extras)) {
		if _, known := postFieldIndex[name]; known {
			continue // a known field always wins over a stray copy in Extras
		}
		if err := write(name, rawOrNull(p.Extras[name])); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func rawOrNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	return r
}

// jsonKind returns the first byte of a JSON value, which names its type.
func jsonKind(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func decodeRaw(raw json.RawMessage, dst *json.RawMessage) error {
	*dst = compact(raw)
	return nil
}

// compact drops insignificant whitespace so that a decoded post compares
// equal to the same post decoded from its own encoding.
func compact(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return slices.Clone(raw) // cannot happen for a value json.Unmarshal accepted
	}
	return buf.Bytes()
}

func decodeID(raw json.RawMessage, dst *string) error {
	var s string
	switch jsonKind(raw) {
	case '"':
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		s = string(bytes.TrimSpace(raw)) // a numeric id: accept it, keep it as text
	default:
		return fmt.Errorf("post id must be a decimal string, got %.20s", raw)
	}
	n, err := parseID(s)
	if err != nil {
		return err
	}
	*dst = strconv.FormatInt(n, 10)
	return nil
}

func decodeString(raw json.RawMessage, dst *string) error {
	switch jsonKind(raw) {
	case 'n':
		*dst = ""
		return nil
	case '"':
		if s, ok := plainString(raw); ok {
			*dst = s
			return nil
		}
		return json.Unmarshal(raw, dst)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return err
		}
		*dst = n.String()
		return nil
	default:
		return fmt.Errorf("want a string, got %.20s", raw)
	}
}

func decodeInt64(raw json.RawMessage, dst *int64) error {
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		*dst = n // the common case, without a second JSON parse
		return nil
	}
	var text string
	switch jsonKind(raw) {
	case 'n':
		*dst = 0
		return nil
	case '"':
		if err := json.Unmarshal(raw, &text); err != nil {
			return err
		}
		text = strings.TrimSpace(text)
		if text == "" {
			*dst = 0
			return nil
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return err
		}
		text = n.String()
	default:
		return fmt.Errorf("want an integer, got %.20s", raw)
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		// 3.0 is still an integer; 3.5 is not.
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != float64(int64(f)) {
			return fmt.Errorf("want an integer, got %q", text)
		}
		n = int64(f)
	}
	*dst = n
	return nil
}

func decodeInt(raw json.RawMessage, dst *int) error {
	var n int64
	if err := decodeInt64(raw, &n); err != nil {
		return err
	}
	if int64(int(n)) != n {
		return fmt.Errorf("integer %d out of range", n)
	}
	*dst = int(n)
	return nil
}

func decodeBool(raw json.RawMessage, dst *bool) error {
	switch string(raw) {
	case "true":
		*dst = true
		return nil
	case "false":
		*dst = false
		return nil
	}
	switch jsonKind(raw) {
	case 'n':
		*dst = false
		return nil
	case 't', 'f':
		return json.Unmarshal(raw, dst)
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		switch strings.TrimSpace(s) {
		case "1", "true":
			*dst = true
			return nil
		case "", "0", "false":
			*dst = false
			return nil
		}
		return fmt.Errorf("want a boolean, got %q", s)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return err
		}
		switch n.String() {
		case "0":
			*dst = false
			return nil
		case "1":
			*dst = true
			return nil
		}
		return fmt.Errorf("want a boolean, got %s", n)
	default:
		return fmt.Errorf("want a boolean, got %.20s", raw)
	}
}

// plainString returns the contents of a JSON string literal that needs no
// unescaping, which is most of them; json.Unmarshal handles the rest.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c == '\\' || c == '"' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(body) {
		return "", false
	}
	return string(body), true
}
