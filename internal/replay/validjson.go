package replay

import "unicode/utf8"

// maxJSONDepth is encoding/json's nesting limit; deeper bodies count as
// not JSON, as they do for json.Valid.
const maxJSONDepth = 10000

// scanJSON reports whether data is one JSON value (RFC 8259) in valid
// UTF-8, and whether white space between its tokens holds a line break.
//
// It does what json.Valid does, several times faster: json.Valid's
// general-purpose scanner was the largest single cost of replaying a
// stream. It is stricter in one way: invalid UTF-8 inside a string makes
// the body not JSON, so that a printed line is always valid UTF-8 JSON.
func scanJSON(data []byte) (valid, lineBreak bool) {
	var stackBuf [32]byte
	stack := stackBuf[:0] // open containers: '{' or '['
	i := 0
	ws := func() {
		for i < len(data) {
			switch data[i] {
			case ' ', '\t':
			case '\n', '\r':
				lineBreak = true
			default:
				return
			}
			i++
		}
	}
	// key reads `"name" :` and the white space after it.
	key := func() bool {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		var ok bool
		if i, ok = scanString(data, i); !ok {
			return false
		}
		ws()
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i++
		ws()
		return true
	}

	ws()
	for {
		// A value starts at i.
		if i >= len(data) {
			return false, lineBreak
		}
		ok := true
		switch c := data[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxJSONDepth {
				return false, lineBreak
			}
			i++
			ws()
			if i < len(data) && data[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				i++
				break
			}
			stack = append(stack, c)
			if c == '{' && !key() {
				return false, lineBreak
			}
			continue
		case c == '"':
			i, ok = scanString(data, i)
		case c == '-' || (c >= '0' && c <= '9'):
			i, ok = scanNumber(data, i)
		case c == 't':
			i, ok = scanLiteral(data, i, "true")
		case c == 'f':
			i, ok = scanLiteral(data, i, "false")
		case c == 'n':
			i, ok = scanLiteral(data, i, "null")
		default:
			return false, lineBreak
		}
		if !ok {
			return false, lineBreak
		}
		// After a value: close containers until one continues with a comma.
		for {
			ws()
			if len(stack) == 0 {
				return i == len(data), lineBreak
			}
			if i >= len(data) {
				return false, lineBreak
			}
			top := stack[len(stack)-1]
			if data[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if data[i] != ',' {
				return false, lineBreak
			}
			i++
			ws()
			if top == '{' && !key() {
				return false, lineBreak
			}
			break
		}
	}
}

// scanString reads the string starting at data[i] == '"' and returns the
// index after its closing quote.
func scanString(data []byte, i int) (int, bool) {
	i++
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(data) {
				return i, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) {
					return i, false
				}
				for _, h := range data[i+2 : i+6] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// scanNumber reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func scanNumber(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	if i >= len(data) {
		return i, false
	}
	switch {
	case data[i] == '0':
		i++
	case data[i] >= '1' && data[i] <= '9':
		i = digits(data, i)
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		j := digits(data, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(data, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func digits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

func scanLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}
