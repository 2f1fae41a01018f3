package wechat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestXMLToMapShapes(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want map[string]any
	}{
		{
			name: "leaf elements become their text",
			doc:  `<xml><A>1</A><B><![CDATA[two]]></B></xml>`,
			want: map[string]any{"A": "1", "B": "two"},
		},
		{
			name: "leaf text is kept untouched, whitespace and CDATA markup included",
			doc:  "<xml><Content><![CDATA[  a <b> & ]]>c\n</Content></xml>",
			want: map[string]any{"Content": "  a <b> & c\n"},
		},
		{
			name: "standard entities and character references are decoded",
			doc:  `<xml><A>&lt;&amp;&#x4e2d;</A></xml>`,
			want: map[string]any{"A": "<&中"},
		},
		{
			name: "empty and self-closing elements become empty strings",
			doc:  `<xml><A></A><B/><C><![CDATA[]]></C></xml>`,
			want: map[string]any{"A": "", "B": "", "C": ""},
		},
		{
			name: "an element with children becomes a map and layout whitespace is dropped",
			doc:  "<xml>\n <ScanCodeInfo>\n  <ScanType>qrcode</ScanType>\n  <ScanResult>1</ScanResult>\n </ScanCodeInfo>\n</xml>",
			want: map[string]any{"ScanCodeInfo": map[string]any{"ScanType": "qrcode", "ScanResult": "1"}},
		},
		{
			name: "a single repeated-kind element stays a map",
			doc:  `<xml><PicList><item><PicMd5Sum>a</PicMd5Sum></item></PicList></xml>`,
			want: map[string]any{"PicList": map[string]any{"item": map[string]any{"PicMd5Sum": "a"}}},
		},
		{
			name: "repeated siblings become a list in document order",
			doc:  `<xml><PicList><item><PicMd5Sum>a</PicMd5Sum></item><item><PicMd5Sum>b</PicMd5Sum></item><item>c</item></PicList></xml>`,
			want: map[string]any{"PicList": map[string]any{"item": []any{
				map[string]any{"PicMd5Sum": "a"}, map[string]any{"PicMd5Sum": "b"}, "c",
			}}},
		},
		{
			name: "repeated leaves at the root become a list",
			doc:  `<xml><A>1</A><B>x</B><A>2</A></xml>`,
			want: map[string]any{"A": []any{"1", "2"}, "B": "x"},
		},
		{
			name: "attributes, comments and an XML declaration are ignored",
			doc:  `<?xml version="1.0" encoding="UTF-8"?><!-- c --><xml a="1"><A b="2">1<!-- inner --></A></xml><!-- after -->`,
			want: map[string]any{"A": "1"},
		},
		{
			name: "a root with no children gives an empty map",
			doc:  `<xml>text</xml>`,
			want: map[string]any{},
		},
		{
			name: "32 levels of nesting are accepted",
			doc:  nestedDoc(32),
			want: nestedMap(32),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := XMLToMap([]byte(tt.doc))
			if err != nil {
				t.Fatalf("XMLToMap: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("XMLToMap =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestXMLToMapRejectsMalformed(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"empty document", ""},
		{"whitespace only", "  \n"},
		{"text before the root", "hello<xml/>"},
		{"unclosed root", "<xml><A>1</A>"},
		{"mismatched tags", "<xml><A>1</B></xml>"},
		{"33 levels of nesting", nestedDoc(33)},
		{"10000 levels of nesting", nestedDoc(10000)},
		{"DOCTYPE declaration", `<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><A>&xxe;</A></xml>`},
		{"DOCTYPE without entities", `<!DOCTYPE xml><xml><A>1</A></xml>`},
		{"billion laughs", `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><xml><A>&lol2;</A></xml>`},
		{"undefined entity without DOCTYPE", `<xml><A>&xxe;</A></xml>`},
		{"second root element", "<xml><A>1</A></xml><xml/>"},
		{"text after the root", "<xml><A>1</A></xml>trailing"},
		{"non-UTF-8 declared encoding", `<?xml version="1.0" encoding="GBK"?><xml><A>1</A></xml>`},
		{"invalid UTF-8", "<xml><A>\xff\xfe</A></xml>"},
		{"control character", "<xml><A>\x01</A></xml>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := XMLToMap([]byte(tt.doc))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("XMLToMap = (%v, %v), want ErrMalformed", m, err)
			}
		})
	}
}

// nestedDoc returns <xml> with depth-1 levels of <a> inside, depth levels in all.
func nestedDoc(depth int) string {
	return "<xml>" + strings.Repeat("<a>", depth-1) + "x" + strings.Repeat("</a>", depth-1) + "</xml>"
}

func nestedMap(depth int) map[string]any {
	var v any = "x"
	for range depth - 2 {
		v = map[string]any{"a": v}
	}
	return map[string]any{"a": v}
}
