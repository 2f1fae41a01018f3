package wechat

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// checkFastMatchesStd fails t when decodeFlatXML accepts doc but its result
// differs from encoding/xml's, including when encoding/xml rejects doc. It
// returns whether the fast path accepted.
func checkFastMatchesStd(t *testing.T, doc []byte) bool {
	t.Helper()
	fast, ok := decodeFlatXML(doc)
	if !ok {
		if fast != nil {
			t.Fatalf("decodeFlatXML declined %q but returned %#v", doc, fast)
		}
		return false
	}
	root, std, err := decodeXMLStd(doc)
	if err != nil {
		t.Fatalf("decodeFlatXML accepted %q, which encoding/xml rejects: %v", doc, err)
	}
	if root != "xml" {
		t.Fatalf("decodeFlatXML accepted %q, whose root is <%s>", doc, root)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("decodeFlatXML(%q) =\n%#v\nencoding/xml gives\n%#v", doc, fast, std)
	}
	return true
}

// onlyLeaves reports whether every value is a string or a list of strings,
// the shape a flat document decodes to.
func onlyLeaves(fields map[string]any) bool {
	for _, v := range fields {
		switch v := v.(type) {
		case string:
		case []any:
			for _, e := range v {
				if _, ok := e.(string); !ok {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

func TestFlatXMLMatchesStdOnCallbacks(t *testing.T) {
	docs := map[string][]byte{"vectorC": []byte(vectorC.decrypted)}
	for _, file := range callbackFiles(t) {
		doc, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs[file] = doc
	}
	c := newVectorCCodec(t)
	for _, mode := range []Mode{ModeCompat, ModeSafe} {
		_, body, err := c.SignCallback(mode, []byte(vectorC.decrypted), "", "1700000000", "12345")
		if err != nil {
			t.Fatal(err)
		}
		docs["envelope "+mode.String()] = body
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			accepted := checkFastMatchesStd(t, doc)
			// A document whose only children are leaves, with no entity or
			// carriage return, is the shape the fast path exists for: it
			// must not quietly fall back.
			_, std, err := decodeXMLStd(doc)
			if err != nil {
				t.Fatal(err)
			}
			wantFast := onlyLeaves(std) && !strings.ContainsAny(string(doc), "&\r")
			if accepted != wantFast {
				t.Errorf("decodeFlatXML accepted = %v, want %v", accepted, wantFast)
			}
		})
	}
}

func TestFlatXMLEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		// fast is whether decodeFlatXML takes the document; either way
		// the result must be encoding/xml's.
		fast bool
	}{
		{"CDATA and plain leaves are taken", "<xml><A><![CDATA[x]]></A><B>12</B></xml>", true},
		{"whitespace and newlines between elements are dropped", "\n <xml>\n\t<A>1</A>\n  <B><![CDATA[b]]></B>\n</xml>\n\n", true},
		{"carriage returns between elements are dropped", "<xml>\r\n<A>1</A>\r\n</xml>\r\n", true},
		{"leaf whitespace is kept", "<xml><A>  a b \n</A><B><![CDATA[ \n b \t]]></B></xml>", true},
		{"whitespace-only leaf is kept", "<xml><A> </A><B>\n</B></xml>", true},
		{"empty leaf, empty CDATA and self-closing leaf are empty strings", "<xml><A></A><B><![CDATA[]]></B><C/></xml>", true},
		{"CDATA keeps markup characters verbatim", "<xml><A><![CDATA[<b>&amp; ] ]] >]]></A></xml>", true},
		{"CDATA ends at the first ]]>", "<xml><A><![CDATA[a]]]></A></xml>", true},
		{"greater-than in plain text is text", "<xml><A>a > b ]> ]</A></xml>", true},
		{"repeated leaves become a list", "<xml><A>1</A><B>x</B><A>2</A><A><![CDATA[3]]></A></xml>", true},
		{"twice repeated leaf becomes a two-element list", "<xml><A>1</A><A>1</A></xml>", true},
		{"multi-byte UTF-8 is kept", "<xml><A>中文 😀 \uFFFD</A><B><![CDATA[é]]></B></xml>", true},
		{"tab and DEL are XML characters", "<xml><A>\t\x7f</A></xml>", true},
		{"name characters digits dot dash underscore", "<xml><_a.b-c9>1</_a.b-c9></xml>", true},
		{"root without children is an empty map", "<xml></xml>", true},
		{"root with only whitespace is an empty map", "<xml>\n  \n</xml>", true},
		{"self-closing root is an empty map", " <xml/> ", true},

		{"nested element is declined", "<xml><A><B>1</B></A></xml>", false},
		{"entity is declined", "<xml><A>a&amp;b</A></xml>", false},
		{"character reference is declined", "<xml><A>&#x4e2d;</A></xml>", false},
		{"undefined entity is declined", "<xml><A>&xxe;</A></xml>", false},
		{"attribute on a leaf is declined", `<xml><A b="1">x</A></xml>`, false},
		{"attribute on the root is declined", `<xml a="1"><A>x</A></xml>`, false},
		{"space inside a start tag is declined", "<xml><A >x</A></xml>", false},
		{"space inside an end tag is declined", "<xml><A>x</A ></xml>", false},
		{"space inside the root end tag is declined", "<xml><A>x</A></xml >", false},
		{"comment is declined", "<xml><!-- c --><A>x</A></xml>", false},
		{"comment after the root is declined", "<xml><A>x</A></xml><!-- c -->", false},
		{"comment inside a leaf is declined", "<xml><A>x<!-- c --></A></xml>", false},
		{"processing instruction is declined", `<?xml version="1.0"?><xml><A>x</A></xml>`, false},
		{"DOCTYPE is declined", `<!DOCTYPE xml><xml><A>x</A></xml>`, false},
		{"text mixed with CDATA is declined", "<xml><A>a<![CDATA[b]]></A></xml>", false},
		{"CDATA followed by text is declined", "<xml><A><![CDATA[b]]> </A></xml>", false},
		{"two CDATA sections are declined", "<xml><A><![CDATA[a]]><![CDATA[b]]></A></xml>", false},
		{"unterminated CDATA is declined", "<xml><A><![CDATA[a</A></xml>", false},
		{"]]> in plain text is declined", "<xml><A>a]]>b</A></xml>", false},
		{"carriage return in text is declined", "<xml><A>a\r\nb</A></xml>", false},
		{"carriage return in CDATA is declined", "<xml><A><![CDATA[a\rb]]></A></xml>", false},
		{"invalid UTF-8 is declined", "<xml><A>\xff\xfe</A></xml>", false},
		{"invalid UTF-8 in CDATA is declined", "<xml><A><![CDATA[\xc3]]></A></xml>", false},
		{"control character is declined", "<xml><A>\x01</A></xml>", false},
		{"NUL is declined", "<xml><A>\x00</A></xml>", false},
		{"U+FFFE is declined", "<xml><A>\uFFFE</A></xml>", false},
		{"encoded surrogate is declined", "<xml><A>\xed\xa0\x80</A></xml>", false},
		{"mismatched end tag is declined", "<xml><A>1</B></xml>", false},
		{"end tag with a longer name is declined", "<xml><A>1</AB></xml>", false},
		{"unclosed root is declined", "<xml><A>1</A>", false},
		{"unclosed leaf is declined", "<xml><A>1", false},
		{"root other than xml is declined", "<root><A>1</A></root>", false},
		{"root with a longer name is declined", "<xmlx><A>1</A></xmlx>", false},
		{"root name case differs", "<XML><A>1</A></XML>", false},
		{"text in the root is declined", "<xml>text<A>1</A></xml>", false},
		{"text-only root is declined", "<xml>text</xml>", false},
		{"text after the root is declined", "<xml><A>1</A></xml>x", false},
		{"second root is declined", "<xml><A>1</A></xml><xml/>", false},
		{"text before the root is declined", "x<xml><A>1</A></xml>", false},
		{"byte order mark is declined", "\ufeff<xml><A>1</A></xml>", false},
		{"namespaced name is declined", "<xml><a:B>1</a:B></xml>", false},
		{"name starting with a digit is declined", "<xml><1A>1</1A></xml>", false},
		{"name starting with a dash is declined", "<xml><-A>1</-A></xml>", false},
		{"non-ASCII name is declined", "<xml><名>1</名></xml>", false},
		{"name with non-ASCII tail is declined", "<xml><Aé>1</Aé></xml>", false},
		{"form feed between elements is declined", "<xml>\f<A>1</A></xml>", false},
		{"empty document is declined", "", false},
		{"whitespace only is declined", " \n", false},
		{"lone less-than is declined", "<", false},
		{"truncated root tag is declined", "<xml", false},
		{"truncated self-closing leaf is declined", "<xml><A/", false},
		{"end tag without name is declined", "<xml><A>1</></xml>", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkFastMatchesStd(t, []byte(tt.doc)); got != tt.fast {
				t.Errorf("decodeFlatXML accepted = %v, want %v", got, tt.fast)
			}
			// The public entry point must keep encoding/xml's answer in
			// both cases.
			gotRoot, got, gotErr := decodeXML([]byte(tt.doc))
			wantRoot, want, wantErr := decodeXMLStd([]byte(tt.doc))
			if gotRoot != wantRoot || !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) ||
				gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Errorf("decodeXML = (%q, %#v, %v), want (%q, %#v, %v)", gotRoot, got, gotErr, wantRoot, want, wantErr)
			}
		})
	}
}

func FuzzFastXMLMatches(f *testing.F) {
	for _, file := range callbackFiles(f) {
		doc, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
	}
	f.Add([]byte(vectorC.decrypted))
	f.Add([]byte("<xml><A><![CDATA[a]]]></A><A>1</A><B/><C></C></xml>"))
	f.Add([]byte("<xml>\r\n<A>a]]>b\r</A><B><![CDATA[\r]]></B></xml>"))
	f.Add([]byte("<xml><A>&amp;</A><A>\xff</A><a:B>1</a:B></xml>"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkFastMatchesStd(t, doc)
	})
}

// BenchmarkDecodeXML compares the fast path with encoding/xml on a flat
// text message and a safe-mode envelope.
func BenchmarkDecodeXML(b *testing.B) {
	c := newVectorCCodec(b)
	_, envelope, err := c.SignCallback(ModeSafe, []byte(vectorC.decrypted), "", "1700000000", "12345")
	if err != nil {
		b.Fatal(err)
	}
	docs := []struct {
		name string
		doc  []byte
	}{
		{"text", []byte(vectorC.decrypted)},
		{"envelope", envelope},
	}
	for _, d := range docs {
		for _, impl := range []struct {
			name   string
			decode func([]byte) (string, map[string]any, error)
		}{
			{"decodeXML", decodeXML},
			{"encoding-xml", decodeXMLStd},
		} {
			b.Run(d.name+"/"+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(d.doc)))
				for b.Loop() {
					if _, _, err := impl.decode(d.doc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
