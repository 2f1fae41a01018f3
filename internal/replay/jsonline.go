package replay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// record is one event as printed.
type record struct {
	Stream  string // empty: not from a stream (core NATS), stream and seq are left out
	Seq     uint64
	Subject string
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// lineEncoder builds JSON lines by hand: replay prints tens of thousands
// of events a second and reflection-based encoding would dominate that.
// It reuses its buffers, so it is not safe for concurrent use.
type lineEncoder struct {
	keys    []string
	compact bytes.Buffer
}

// appendLine appends r as one JSON object and a newline.
func (e *lineEncoder) appendLine(dst []byte, r *record) []byte {
	dst = append(dst, '{')
	if r.Stream != "" {
		dst = append(dst, `"stream":`...)
		dst = appendJSONString(dst, r.Stream)
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, r.Seq, 10)
		dst = append(dst, ',')
	}
	dst = append(dst, `"subject":`...)
	dst = appendJSONString(dst, r.Subject)
	dst = append(dst, `,"time":"`...)
	dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","headers":{`...)
	e.keys = e.keys[:0]
	for k := range r.Header {
		e.keys = append(e.keys, k)
	}
	slices.Sort(e.keys)
	for i, k := range e.keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		switch vs := r.Header[k]; len(vs) {
		case 1:
			dst = appendJSONString(dst, vs[0])
		default:
			dst = append(dst, '[')
			for j, v := range vs {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, v)
			}
			dst = append(dst, ']')
		}
	}
	dst = append(dst, '}')
	dst = e.appendData(dst, r.Data)
	return append(dst, '}', '\n')
}

// appendData appends ,"data":<body> for a JSON body and
// ,"data_base64":"…" for anything else (empty bodies included).
func (e *lineEncoder) appendData(dst, data []byte) []byte {
	if valid, lineBreak := scanJSON(data); valid {
		dst = append(dst, `,"data":`...)
		// A line break in white space would split the line: such bodies
		// are compacted.
		if !lineBreak {
			return append(dst, data...)
		}
		e.compact.Reset()
		if err := json.Compact(&e.compact, data); err == nil {
			return append(dst, e.compact.Bytes()...)
		}
		dst = dst[:len(dst)-len(`,"data":`)]
	}
	dst = append(dst, `,"data_base64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, data)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Unlike strconv.AppendQuote
// (Go syntax: \x00, \a) it only uses escapes JSON knows, and it replaces
// invalid UTF-8 with U+FFFD as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
