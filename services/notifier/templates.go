package notifier

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// messageTemplate is a text with {placeholders}. Operators edit these, so
// the syntax is the simplest that works: {name} where name is one of the
// kind's Placeholders; any other brace is literal text. An unknown name is
// an error at start-up rather than a customer reading "{nickame}".
type messageTemplate struct {
	parts []templatePart
}

type templatePart struct {
	literal     string
	placeholder string // set: substitute this value
}

var placeholderRE = regexp.MustCompile(`\{([a-z0-9_]+)\}`)

func parseTemplate(kind, text string) (*messageTemplate, error) {
	allowed, ok := Placeholders[kind]
	if !ok {
		return nil, fmt.Errorf("template of unknown kind %q", kind)
	}
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("template %s is empty (disable the kind instead)", kind)
	}
	t := &messageTemplate{}
	last := 0
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(text, -1) {
		name := text[m[2]:m[3]]
		if !slices.Contains(allowed, name) {
			return nil, fmt.Errorf("template %s: unknown placeholder {%s} (allowed: {%s})", kind, name, strings.Join(allowed, "}, {"))
		}
		if m[0] > last {
			t.parts = append(t.parts, templatePart{literal: text[last:m[0]]})
		}
		t.parts = append(t.parts, templatePart{placeholder: name})
		last = m[1]
	}
	if last < len(text) {
		t.parts = append(t.parts, templatePart{literal: text[last:]})
	}
	return t, nil
}

// render substitutes values; a placeholder without a value becomes "".
func (t *messageTemplate) render(values map[string]string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.placeholder != "" {
			b.WriteString(values[p.placeholder])
		} else {
			b.WriteString(p.literal)
		}
	}
	return b.String()
}

func (t *messageTemplate) uses(name string) bool {
	for _, p := range t.parts {
		if p.placeholder == name {
			return true
		}
	}
	return false
}
