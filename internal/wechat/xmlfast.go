package wechat

import (
	"bytes"
	"unicode/utf8"
)

// flatLeaf is one child of the root found by decodeFlatXML, as offsets into
// the document: the name is doc[nameStart:nameEnd], the text
// doc[textStart:textEnd].
type flatLeaf struct {
	nameStart, nameEnd int
	textStart, textEnd int
}

// decodeFlatXML is decodeXML's fast path for the shape nearly every WeChat
// callback and envelope has:
//
//	<xml><Tag><![CDATA[text]]></Tag><Num>123</Num>...</xml>
//
// a root named xml whose children are leaves holding either exactly one
// CDATA section or plain text without '&', with only XML whitespace around
// the elements and no attributes, comments, processing instructions or
// declarations. For such a document it returns what decodeXMLStd returns,
// with ok true. For anything else it returns ok false and never an error,
// so that encoding/xml decides on the document, its errors included,
// exactly as it did before the fast path existed. Whenever the scanner is
// not certain it would match encoding/xml (a carriage return, which
// encoding/xml rewrites, a name with a colon, an unusual character), it
// declines.
func decodeFlatXML(doc []byte) (fields map[string]any, ok bool) {
	i := skipXMLSpace(doc, 0)
	if !bytes.HasPrefix(doc[i:], []byte("<xml")) {
		return nil, false
	}
	i += len("<xml")
	switch {
	case bytes.HasPrefix(doc[i:], []byte("/>")):
		if skipXMLSpace(doc, i+2) != len(doc) {
			return nil, false
		}
		return map[string]any{}, true
	case i < len(doc) && doc[i] == '>':
		i++
	default:
		return nil, false
	}

	// The leaves are collected first and the strings made only once the
	// whole document is known to be flat, so a declined document costs no
	// allocation. Sixteen leaves cover the usual message without growing.
	var buf [16]flatLeaf
	leaves := buf[:0]
	for {
		i = skipXMLSpace(doc, i)
		if i+1 >= len(doc) || doc[i] != '<' {
			return nil, false
		}
		if doc[i+1] == '/' {
			break // the root's end tag, checked below
		}
		leaf, next, ok := scanFlatLeaf(doc, i)
		if !ok {
			return nil, false
		}
		leaves = append(leaves, leaf)
		i = next
	}
	if !bytes.HasPrefix(doc[i:], []byte("</xml>")) {
		return nil, false
	}
	if skipXMLSpace(doc, i+len("</xml>")) != len(doc) {
		return nil, false
	}

	// One string for the whole document: every name and text is a
	// substring of it, which costs one allocation instead of two per leaf.
	s := string(doc)
	fields = make(map[string]any, len(leaves))
	for _, l := range leaves {
		addChild(fields, s[l.nameStart:l.nameEnd], s[l.textStart:l.textEnd])
	}
	return fields, true
}

// scanFlatLeaf reads one leaf element starting at doc[i] == '<': <Name/>,
// <Name></Name>, <Name><![CDATA[...]]></Name> or <Name>text</Name>. It
// returns the leaf and the offset just past it, or ok false when the element
// is anything else.
func scanFlatLeaf(doc []byte, i int) (leaf flatLeaf, next int, ok bool) {
	leaf.nameStart = i + 1
	leaf.nameEnd = scanFlatName(doc, leaf.nameStart)
	if leaf.nameEnd == leaf.nameStart || leaf.nameEnd >= len(doc) {
		return leaf, 0, false
	}
	name := doc[leaf.nameStart:leaf.nameEnd]
	j := leaf.nameEnd
	switch doc[j] {
	case '>':
		j++
	case '/':
		if j+1 < len(doc) && doc[j+1] == '>' {
			leaf.textStart, leaf.textEnd = j, j // empty
			return leaf, j + 2, true
		}
		return leaf, 0, false
	default:
		return leaf, 0, false // attributes, whitespace in the tag, or an odd name
	}

	cdataOpen := []byte("<![CDATA[")
	if bytes.HasPrefix(doc[j:], cdataOpen) {
		leaf.textStart = j + len(cdataOpen)
		n := bytes.Index(doc[leaf.textStart:], []byte("]]>"))
		if n < 0 {
			return leaf, 0, false
		}
		leaf.textEnd = leaf.textStart + n
		if !validFlatText(doc[leaf.textStart:leaf.textEnd]) {
			return leaf, 0, false
		}
		j = leaf.textEnd + len("]]>")
	} else {
		leaf.textStart = j
		n := bytes.IndexByte(doc[j:], '<')
		if n < 0 {
			return leaf, 0, false
		}
		leaf.textEnd = j + n
		text := doc[leaf.textStart:leaf.textEnd]
		// encoding/xml decodes entities and rejects "]]>" in plain text.
		if bytes.IndexByte(text, '&') >= 0 || bytes.Contains(text, []byte("]]>")) || !validFlatText(text) {
			return leaf, 0, false
		}
		j = leaf.textEnd
	}

	// The end tag must follow directly: text mixed with CDATA, a second
	// CDATA section or a child element leave the fast path.
	if !(j+2+len(name) < len(doc) && doc[j] == '<' && doc[j+1] == '/' &&
		bytes.Equal(doc[j+2:j+2+len(name)], name) && doc[j+2+len(name)] == '>') {
		return leaf, 0, false
	}
	return leaf, j + 3 + len(name), true
}

// scanFlatName returns the end of the element name starting at doc[i]. It
// accepts only ASCII names without a colon (encoding/xml splits a colon into
// a namespace prefix), starting with a letter or '_'; for anything else it
// returns i, an empty name.
func scanFlatName(doc []byte, i int) int {
	if i >= len(doc) {
		return i
	}
	if c := doc[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_') {
		return i
	}
	j := i + 1
	for j < len(doc) {
		c := doc[j]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '_' || c == '.' || c == '-') {
			break
		}
		j++
	}
	if j < len(doc) && doc[j] >= utf8.RuneSelf {
		return i // a non-ASCII name character: leave it to encoding/xml
	}
	return j
}

// validFlatText reports whether text is valid UTF-8 made only of XML
// characters, with no carriage return. encoding/xml rejects the former and
// rewrites "\r\n" and "\r" to "\n" in both text and CDATA, which the fast
// path does not mirror.
func validFlatText(text []byte) bool {
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		// Valid UTF-8 never decodes to a surrogate; what is left outside
		// XML's Char production are U+FFFE and U+FFFF.
		if r == 0xFFFE || r == 0xFFFF {
			return false
		}
		i += size
	}
	return true
}

// skipXMLSpace returns the offset of the first byte at or after i that is not
// XML whitespace. Whitespace between elements is dropped by decodeXMLStd, so
// carriage returns are harmless here.
func skipXMLSpace(doc []byte, i int) int {
	for i < len(doc) {
		switch doc[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
