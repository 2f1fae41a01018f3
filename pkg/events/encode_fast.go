package events

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The WeChat events are published once per callback, on the hot path of
// ingest, and json.Marshal spends most of its time there on reflection and
// on boxing the raw map. The appenders below write the very bytes
// encoding/json writes for these types (field order, omitempty, sorted map
// keys, HTML-safe string escaping, invalid UTF-8 as \ufffd); the tests
// compare the two on every golden file, every callback sample and fuzzed
// strings. Any value they are not sure to encode identically (a raw value
// of another type, a time json would refuse) makes them give up, and the
// event is encoded by encoding/json instead.

// errFallback says: encode this event with encoding/json.
type errFallback struct{}

func (errFallback) Error() string { return "events: use encoding/json" }

// appendFast appends the JSON of e when e is one of the WeChat event types;
// ok is false for any other type or value, with dst unchanged.
func appendFast(dst []byte, e Event) (out []byte, ok bool) {
	switch e.(type) {
	case MessageReceived, EventReceived, SessionCreated, SessionSwitched, SessionClosed:
	default:
		return dst, false
	}
	if dst == nil {
		// Big enough for a typical callback's event in one allocation.
		dst = make([]byte, 0, 1024)
	}
	var err error
	switch v := e.(type) {
	case MessageReceived:
		out, err = v.appendJSON(dst)
	case EventReceived:
		out, err = v.appendJSON(dst)
	case SessionCreated:
		out, err = v.appendJSON(dst)
	case SessionSwitched:
		out, err = v.appendJSON(dst)
	case SessionClosed:
		out, err = v.appendJSON(dst)
	default:
		return dst, false
	}
	if err != nil {
		return dst, false
	}
	return out, true
}

func (m MessageReceived) appendJSON(b []byte) ([]byte, error) {
	b, err := appendHead(b, m.Meta, m.WeChatSource)
	if err != nil {
		return b, err
	}
	b = appendField(b, `,"msg_type":`, m.MsgType)
	b = appendField(b, `,"msg_id":`, m.MsgID)
	b = appendOmitEmpty(b, `,"content":`, m.Content)
	b = appendOmitEmpty(b, `,"pic_url":`, m.PicURL)
	b = appendOmitEmpty(b, `,"media_id":`, m.MediaID)
	b = appendOmitEmpty(b, `,"format":`, m.Format)
	b = appendOmitEmpty(b, `,"recognition":`, m.Recognition)
	b = appendOmitEmpty(b, `,"thumb_media_id":`, m.ThumbMediaID)
	b = appendOmitEmpty(b, `,"location_x":`, m.LocationX)
	b = appendOmitEmpty(b, `,"location_y":`, m.LocationY)
	b = appendOmitEmpty(b, `,"scale":`, m.Scale)
	b = appendOmitEmpty(b, `,"label":`, m.Label)
	b = appendOmitEmpty(b, `,"title":`, m.Title)
	b = appendOmitEmpty(b, `,"description":`, m.Description)
	b = appendOmitEmpty(b, `,"url":`, m.URL)
	return append(b, '}'), nil
}

func (e EventReceived) appendJSON(b []byte) ([]byte, error) {
	b, err := appendHead(b, e.Meta, e.WeChatSource)
	if err != nil {
		return b, err
	}
	b = appendField(b, `,"event":`, e.Event)
	b = appendOmitEmpty(b, `,"event_key":`, e.EventKey)
	b = appendOmitEmpty(b, `,"ticket":`, e.Ticket)
	b = appendOmitEmpty(b, `,"latitude":`, e.Latitude)
	b = appendOmitEmpty(b, `,"longitude":`, e.Longitude)
	b = appendOmitEmpty(b, `,"precision":`, e.Precision)
	return append(b, '}'), nil
}

func (s SessionCreated) appendJSON(b []byte) ([]byte, error) {
	b, err := appendHead(b, s.Meta, s.WeChatSource)
	if err != nil {
		return b, err
	}
	b = appendField(b, `,"kf_account":`, s.KfAccount)
	return append(b, '}'), nil
}

func (s SessionSwitched) appendJSON(b []byte) ([]byte, error) {
	b, err := appendHead(b, s.Meta, s.WeChatSource)
	if err != nil {
		return b, err
	}
	b = appendField(b, `,"from_kf_account":`, s.FromKfAccount)
	b = appendField(b, `,"to_kf_account":`, s.ToKfAccount)
	return append(b, '}'), nil
}

func (s SessionClosed) appendJSON(b []byte) ([]byte, error) {
	b, err := appendHead(b, s.Meta, s.WeChatSource)
	if err != nil {
		return b, err
	}
	b = appendField(b, `,"kf_account":`, s.KfAccount)
	return append(b, '}'), nil
}

// appendHead writes "{", the Meta fields and the WeChatSource fields, in
// the order encoding/json gives embedded structs: declaration order.
func appendHead(b []byte, m Meta, s WeChatSource) ([]byte, error) {
	b = append(b, '{')
	// The first field decides whether a comma is needed: app_id and
	// product_id may both be omitted, occurred_at never is.
	sep := ""
	if m.AppID != "" {
		b = appendField(b, `"app_id":`, m.AppID)
		sep = ","
	}
	if m.ProductID != "" {
		b = appendField(b, sep+`"product_id":`, m.ProductID)
		sep = ","
	}
	b = append(b, sep...)
	b = append(b, `"occurred_at":`...)
	b, err := appendTime(b, m.OccurredAt)
	if err != nil {
		return b, err
	}
	b = append(b, `,"received_at":`...)
	if b, err = appendTime(b, m.ReceivedAt); err != nil {
		return b, err
	}
	b = appendField(b, `,"openid":`, s.OpenID)
	b = appendField(b, `,"to_user_name":`, s.ToUserName)
	b = append(b, `,"create_time":`...)
	b = strconv.AppendInt(b, s.CreateTime, 10)
	b = append(b, `,"raw":`...)
	return appendRawMap(b, s.Raw)
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, name...)
	return appendString(b, v)
}

func appendOmitEmpty(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, name, v)
}

// appendTime writes what time.Time.MarshalJSON writes. A time it would
// refuse (a year outside 0..9999) is left to encoding/json, which reports
// the error in its own words.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	// MarshalJSON refuses a year outside 0..9999 and a zone offset of 24
	// hours or more; RFC3339Nano is the layout it writes otherwise.
	_, off := t.Zone()
	if y := t.Year(); y < 0 || y > 9999 || off <= -24*3600 || off >= 24*3600 {
		return b, errFallback{}
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendRawValue writes the values XMLToMap produces (string, nested
// map[string]any, []any); anything else is encoded by encoding/json.
func appendRawValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, v), nil
	case map[string]any:
		return appendRawMap(b, v)
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendRawValue(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return b, errFallback{}
	}
	return append(b, enc...), nil
}

// appendRawMap writes a map with its keys sorted by their bytes, as
// encoding/json does.
func appendRawMap(b []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	var stack [32]string // a callback has 5–15 elements: no allocation
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendRawValue(b, m[k]); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendString is encoding/json's string encoding with HTML escaping on
// (json.Marshal's default): <, > and & become \u003c, \u003e and \u0026,
// control characters are escaped, invalid UTF-8 becomes \ufffd and U+2028
// and U+2029 are escaped for JSONP.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
