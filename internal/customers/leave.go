package customers

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// DefaultLeavePhrases are the messages that take a waiting customer out
// of the queue when none are configured (KEFU_QUEUE_LEAVE_PHRASES).
var DefaultLeavePhrases = []string{"不等了", "取消排队", "退出排队"}

// LeaveDetector recognises the messages by which a waiting customer asks
// to leave the queue. Queue care takes such a customer out; ingest answers
// their message "success" instead of transferring it into the queue
// (LeaveGate).
//
// A message is a leave request when, once normalised, it equals one of the
// phrases: full-width letters, digits and ASCII punctuation become
// half-width, letters lower-case, and every space, punctuation mark,
// symbol, emoji and invisible format character is dropped. So "不等了！",
// " 取消排队。" and "退出排队~~" match, while "我不等了，先去吃饭" does not:
// only the bare phrase counts, because a false positive takes a customer
// out of a queue they wanted to stay in.
type LeaveDetector struct {
	phrases map[string]string // normalised → as configured
}

// NewLeaveDetector returns a detector of phrases. A phrase that is empty
// once normalised (only punctuation or space) is an error: it would match
// every empty message.
func NewLeaveDetector(phrases []string) (*LeaveDetector, error) {
	if len(phrases) == 0 {
		return nil, errors.New("leave phrases: none configured")
	}
	d := &LeaveDetector{phrases: make(map[string]string, len(phrases))}
	for _, p := range phrases {
		n := normalize(p)
		if n == "" {
			return nil, fmt.Errorf("leave phrase %q has no letters or digits", p)
		}
		d.phrases[n] = p
	}
	return d, nil
}

// IsLeave reports whether text asks to leave the queue.
func (c *LeaveDetector) IsLeave(text string) bool {
	if c == nil || len(text) > maxLeaveBytes {
		return false
	}
	_, ok := c.phrases[normalize(text)]
	return ok
}

// maxLeaveBytes: a leave request is a few characters; a long message
// never is one, and need not be normalised.
const maxLeaveBytes = 256

func normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 0xFF01 && r <= 0xFF5E: // full-width ASCII forms
			r -= 0xFEE0
		case r == 0x3000: // ideographic space
			r = ' '
		}
		if unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) ||
			unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Variation_Selector, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
