package wechat

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// maxXMLDepth bounds element nesting (the root counts as 1). WeChat's deepest
// documents (MASSSENDJOBFINISH) use four levels; the limit keeps hostile
// input from costing stack and time.
const maxXMLDepth = 32

// XMLToMap converts the children of an XML document's root element into a
// map: a leaf element becomes its text (CDATA included, untouched), an
// element with children becomes a nested map, and a name repeated among
// siblings becomes a []any in document order. Attributes and text mixed with
// child elements are ignored; WeChat uses neither. DOCTYPE declarations,
// undefined entities, more than one root and nesting deeper than 32 levels are
// rejected with ErrMalformed.
func XMLToMap(doc []byte) (map[string]any, error) {
	_, fields, err := decodeXML(doc)
	if err != nil {
		return nil, fmt.Errorf("xml to map: %w", err)
	}
	return fields, nil
}

// decodeXML returns the root element's name and its children as XMLToMap
// describes them. Flat <xml> documents, nearly all WeChat sends, take
// decodeFlatXML's scanner, several times cheaper than encoding/xml; the rest
// go through decodeXMLStd, which gives the same result for flat documents.
func decodeXML(doc []byte) (root string, fields map[string]any, err error) {
	if fields, ok := decodeFlatXML(doc); ok {
		return "xml", fields, nil
	}
	return decodeXMLStd(doc)
}

// decodeXMLStd is decodeXML on encoding/xml, for every document shape.
func decodeXMLStd(doc []byte) (root string, fields map[string]any, err error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true // undefined entities such as &xxe; are syntax errors
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return "", nil, fmt.Errorf("no root element: %w", ErrMalformed)
		}
		if err != nil {
			return "", nil, xmlError(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			v, err := readElement(d, 1)
			if err != nil {
				return "", nil, err
			}
			if err := expectEnd(d); err != nil {
				return "", nil, err
			}
			fields, _ = v.(map[string]any)
			if fields == nil {
				fields = map[string]any{}
			}
			return t.Name.Local, fields, nil
		case xml.Directive:
			return "", nil, fmt.Errorf("DOCTYPE or other directive not allowed: %w", ErrMalformed)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return "", nil, fmt.Errorf("text before the root element: %w", ErrMalformed)
			}
		}
	}
}

// readElement reads the content of an element whose start tag has been
// consumed, through its end tag, and returns a string for a leaf or a map for
// an element with children.
func readElement(d *xml.Decoder, depth int) (any, error) {
	var text []byte
	var children map[string]any
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, xmlError(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth >= maxXMLDepth {
				return nil, fmt.Errorf("elements nested deeper than %d levels: %w", maxXMLDepth, ErrMalformed)
			}
			v, err := readElement(d, depth+1)
			if err != nil {
				return nil, err
			}
			if children == nil {
				children = map[string]any{}
				text = nil // whitespace between child elements is layout, not data
			}
			addChild(children, t.Name.Local, v)
		case xml.EndElement:
			if children != nil {
				return children, nil
			}
			return string(text), nil
		case xml.CharData:
			if children == nil {
				text = append(text, t...)
			}
		case xml.Directive:
			return nil, fmt.Errorf("directive inside an element: %w", ErrMalformed)
		}
	}
}

func addChild(m map[string]any, name string, v any) {
	prev, ok := m[name]
	if !ok {
		m[name] = v
		return
	}
	// Values are only ever string or map[string]any, so a []any here can
	// only come from an earlier repetition of the same name.
	if list, ok := prev.([]any); ok {
		m[name] = append(list, v)
		return
	}
	m[name] = []any{prev, v}
}

// expectEnd allows only comments, processing instructions and whitespace
// after the root element.
func expectEnd(d *xml.Decoder) error {
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return xmlError(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("text after the root element: %w", ErrMalformed)
			}
		case xml.Comment, xml.ProcInst:
		default:
			return fmt.Errorf("content after the root element: %w", ErrMalformed)
		}
	}
}

func xmlError(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("xml: %v: %w", err, ErrMalformed)
}
