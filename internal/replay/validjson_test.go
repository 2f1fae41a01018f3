package replay

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var jsonSamples = []string{
	`{"openid":"o1","kf_account":"alice@test"}`, `[]`, `{}`, ` [ 1 , 2 ] `, `"s"`, `0`, `-0.5e+10`, `1E3`, `true`, `false`, `null`,
	"{\n \"a\": [1,\r\n 2]\n}\n", `{"a":{"b":[{"c":null}]}}`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"你好"`,
	``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{1:2}`, `[1 2]`, `01`, `-`, `1.`, `.5`, `1e`, `+1`,
	`tru`, `nulll`, `"unterminated`, `"bad \x escape"`, `"\u12"`, "\"ctl \x01\"", "\"\xff\"", `[1]]`, `{"a":1}x`, `[[[[`, `"a" "b"`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat("[", 9999) + "[]" + strings.Repeat("]", 9999),
	strings.Repeat("[", 10000) + "[]" + strings.Repeat("]", 10000),
}

// reference is what scanJSON must agree with: encoding/json's verdict,
// with invalid UTF-8 refused.
func reference(data []byte) (valid, lineBreak bool) {
	if !json.Valid(data) || !utf8.Valid(data) {
		return false, false
	}
	return true, bytes.ContainsAny(data, "\r\n")
}

func TestScanJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonSamples {
		wantValid, wantBreak := reference([]byte(s))
		valid, lineBreak := scanJSON([]byte(s))
		if valid != wantValid || (valid && lineBreak != wantBreak) {
			show := s
			if len(show) > 40 {
				show = show[:40] + "…"
			}
			t.Errorf("scanJSON(%q) = %v, %v; want %v, %v", show, valid, lineBreak, wantValid, wantBreak)
		}
	}
}

func FuzzScanJSON(f *testing.F) {
	for _, s := range jsonSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		wantValid, wantBreak := reference(data)
		valid, lineBreak := scanJSON(data)
		if valid != wantValid || (valid && lineBreak != wantBreak) {
			t.Fatalf("scanJSON(%q) = %v, %v; want %v, %v", data, valid, lineBreak, wantValid, wantBreak)
		}
	})
}
