package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// translationSuffix marks a translated document: README.zh-CN.md is the
// Simplified Chinese version of README.md, in the same directory so that
// relative links keep working.
const translationSuffix = ".zh-CN.md"

// TestTranslationsFollowTheirOriginals checks every translation that exists
// beside README.md and in docs/ against its English original.
func TestTranslationsFollowTheirOriginals(t *testing.T) {
	if _, err := os.Stat(filepath.Join("..", "README"+translationSuffix)); err != nil {
		t.Fatalf("README%s must exist: %v", translationSuffix, err)
	}
	var translations []string
	for _, dir := range []string{"..", "."} {
		found, err := filepath.Glob(filepath.Join(dir, "*"+translationSuffix))
		if err != nil {
			t.Fatal(err)
		}
		translations = append(translations, found...)
	}
	for _, tr := range translations {
		orig := strings.TrimSuffix(tr, translationSuffix) + ".md"
		t.Run(filepath.ToSlash(tr), func(t *testing.T) {
			origText, err := os.ReadFile(orig)
			if err != nil {
				t.Fatalf("no English original for %s: %v", tr, err)
			}
			trText, err := os.ReadFile(tr)
			if err != nil {
				t.Fatal(err)
			}
			problems := comparePair(
				document{name: filepath.Base(orig), text: string(origText)},
				document{name: filepath.Base(tr), text: string(trText)},
				func(target string) bool {
					_, err := os.Stat(filepath.Join(filepath.Dir(tr), target))
					return err == nil
				})
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
}

// TestComparePairFindsEveryKindOfDrift proves the check fails: each case
// breaks one rule in a small in-memory pair.
func TestComparePairFindsEveryKindOfDrift(t *testing.T) {
	const orig = "# Title\n\n[简体中文](a.zh-CN.md)\n\n## Run `kefu demo`\n\nSee [ops](ops.md) and [below](#more-help).\n\n" +
		"```sh\n# start it\nkefu demo   # simulated traffic\n```\n\n### More help\n\n" +
		"| variable | meaning |\n|---|---|\n| `KEFU_A` | a \\| b |\n"
	const good = "# 标题\n\n[English](a.md)\n\n## 运行 `kefu demo`\n\n见[运维](ops.zh-CN.md)与[下文](#更多帮助)。\n\n" +
		"```sh\n# 启动\nkefu demo   # 模拟流量\n```\n\n### 更多帮助\n\n" +
		"| 变量 | 含义 |\n|---|---|\n| `KEFU_A` | 甲 \\| 乙 |\n"
	cases := []struct {
		name string
		tr   string
		want string // substring of the expected problem; "" means none
	}{
		{"a faithful translation passes", good, ""},
		{"a missing heading is found", strings.Replace(good, "### 更多帮助\n", "", 1), "headings"},
		{"a heading at another level is found", strings.Replace(good, "### 更多帮助", "## 更多帮助", 1), "level"},
		{"a changed code span in a heading is found", strings.Replace(good, "`kefu demo`", "`kefu all`", 1), "code spans"},
		{"a changed command in a code block is found", strings.Replace(good, "kefu demo   #", "kefu all   #", 1), "code block"},
		{"a missing code block is found", strings.Replace(good, "```sh\n# 启动\nkefu demo   # 模拟流量\n```\n", "", 1), "code blocks"},
		{"a dropped link target is found", strings.Replace(good, "[运维](ops.zh-CN.md)", "运维", 1), "ops.md"},
		{"a link to a translation that does not exist is found", strings.Replace(good, "ops.zh-CN.md", "nope.zh-CN.md", 1), "ops.md"},
		{"an anchor that names no heading is found", strings.Replace(good, "(#更多帮助)", "(#more-help)", 1), "#more-help"},
		{"a dropped table row is found", strings.Replace(good, "| `KEFU_A` | 甲 \\| 乙 |\n", "", 1), "rows"},
		{"a table row with another variable is found", strings.Replace(good, "`KEFU_A`", "`KEFU_B`", 1), "keyed"},
		{"a table row with a cell more is found", strings.Replace(good, "甲 \\| 乙", "甲 | 乙", 1), "cells"},
		{"a translation not linking its original is found", strings.Replace(good, "[English](a.md)", "", 1), "link to its original"},
	}
	exists := func(target string) bool { return target == "ops.zh-CN.md" }
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			problems := comparePair(document{"a.md", orig}, document{"a.zh-CN.md", c.tr}, exists)
			if c.want == "" {
				if len(problems) != 0 {
					t.Fatalf("problems in a faithful pair: %q", problems)
				}
				return
			}
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Fatalf("want a problem mentioning %q, got %q", c.want, problems)
		})
	}

	t.Run("an original not linking its translation is found", func(t *testing.T) {
		problems := comparePair(document{"a.md", strings.Replace(orig, "[简体中文](a.zh-CN.md)", "", 1)},
			document{"a.zh-CN.md", good}, exists)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "link to its translation") }) {
			t.Fatalf("got %q", problems)
		}
	})
}

func TestSlug(t *testing.T) {
	for _, c := range []struct{ heading, want string }{
		{"Customers choose an agent", "customers-choose-an-agent"},
		{"Try it: two commands", "try-it-two-commands"},
		{"多客服 admin and agent groups", "多客服-admin-and-agent-groups"},
		{"试用：两条命令", "试用两条命令"},
		{"Attacker 1: someone who has seen a callback URL", "attacker-1-someone-who-has-seen-a-callback-url"},
		{"Run `kefu demo` (fast)", "run-kefu-demo-fast"},
		{"[Link](x.md) and snake_case", "link-and-snake_case"},
	} {
		if got := slug(c.heading); got != c.want {
			t.Errorf("slug(%q) = %q, want %q", c.heading, got, c.want)
		}
	}
}

type document struct {
	name string // base name, e.g. "security.md"
	text string
}

type heading struct {
	level int
	text  string
}

type codeBlock struct {
	info  string
	lines []string
}

// markdown is what the comparison needs of a document.
type markdown struct {
	headings []heading
	blocks   []codeBlock
	links    []string // link and image targets outside code, in order
	tables   [][]tableRow
}

// tableRow is what must survive translation in a table row: its number of
// cells and the code spans of its first cell (a command, variable, path or
// subject that the row is about, in any order).
type tableRow struct {
	cells int
	key   string
}

var (
	headingLine = regexp.MustCompile(`^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$`)
	fenceLine   = regexp.MustCompile("^( *)(```+|~~~+)[ \t]*([^ \t`]*)")
	codeSpan    = regexp.MustCompile("`+[^`]*`+")
	linkTarget  = regexp.MustCompile(`\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)`)
	refTarget   = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
)

func parse(text string) markdown {
	var md markdown
	var open *codeBlock
	var fence string
	var indent int
	var table []tableRow
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if open != nil {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				md.blocks = append(md.blocks, *open)
				open = nil
				continue
			}
			// Drop the fence's indentation (a block inside a list item).
			n := len(line) - len(strings.TrimLeft(line, " "))
			open.lines = append(open.lines, line[min(n, indent):])
			continue
		}
		if row, ok := parseTableRow(line); ok {
			table = append(table, row)
		} else if table != nil {
			md.tables = append(md.tables, table)
			table = nil
		}
		if m := fenceLine.FindStringSubmatch(line); m != nil {
			open = &codeBlock{info: m[3]}
			fence, indent = m[2], len(m[1])
			continue
		}
		if m := headingLine.FindStringSubmatch(line); m != nil {
			md.headings = append(md.headings, heading{level: len(m[1]), text: m[2]})
		}
		prose := codeSpan.ReplaceAllString(line, "code")
		for _, m := range linkTarget.FindAllStringSubmatch(prose, -1) {
			md.links = append(md.links, m[1])
		}
		if m := refTarget.FindStringSubmatch(prose); m != nil {
			md.links = append(md.links, m[1])
		}
	}
	if open != nil {
		md.blocks = append(md.blocks, *open) // unclosed: runs to the end
	}
	if table != nil {
		md.tables = append(md.tables, table)
	}
	return md
}

func parseTableRow(line string) (tableRow, bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") {
		return tableRow{}, false
	}
	// Cells are separated by pipes that no backslash escapes (GitHub reads
	// \| as a pipe inside a cell, code spans included).
	var cells []string
	start := 1
	for i := 1; i < len(line); i++ {
		if line[i] == '|' && line[i-1] != '\\' {
			cells = append(cells, line[start:i])
			start = i + 1
		}
	}
	if start < len(line) {
		cells = append(cells, line[start:]) // no closing pipe
	}
	var key []string
	if len(cells) > 0 {
		// Sorted: a translation may put the identifiers of a sentence in
		// another order, but must keep every one of them.
		key = codeSpan.FindAllString(cells[0], -1)
		slices.Sort(key)
	}
	return tableRow{cells: len(cells), key: strings.Join(key, " ")}, true
}

// comparePair lists every way tr departs from orig. exists says whether a
// target relative to the translation's directory names a file, so a link
// moved to another translation must point at one that is there.
func comparePair(orig, tr document, exists func(target string) bool) []string {
	o, t := parse(orig.text), parse(tr.text)
	var problems []string
	report := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: ", tr.name)+fmt.Sprintf(format, args...))
	}

	if len(o.headings) != len(t.headings) {
		report("%d headings, the original has %d:\n%s", len(t.headings), len(o.headings), outline(o.headings, t.headings))
	}
	for i := range min(len(o.headings), len(t.headings)) {
		oh, th := o.headings[i], t.headings[i]
		if oh.level != th.level {
			report("heading %d %q is at level %d, the original %q at level %d", i+1, th.text, th.level, oh.text, oh.level)
		}
		if ocs, tcs := codeSpan.FindAllString(oh.text, -1), codeSpan.FindAllString(th.text, -1); !slices.Equal(ocs, tcs) {
			report("heading %d %q has code spans %q, the original %q has %q", i+1, th.text, tcs, oh.text, ocs)
		}
	}

	if len(o.blocks) != len(t.blocks) {
		report("%d fenced code blocks, the original has %d", len(t.blocks), len(o.blocks))
	}
	for i := range min(len(o.blocks), len(t.blocks)) {
		ob, tb := o.blocks[i], t.blocks[i]
		if ob.info != tb.info {
			report("code block %d is %q, the original %q", i+1, tb.info, ob.info)
			continue
		}
		ol, tl := withoutComments(ob), withoutComments(tb)
		if !slices.Equal(ol, tl) {
			report("code block %d differs from the original outside comments:\n%s\n--- original:\n%s",
				i+1, strings.Join(tl, "\n"), strings.Join(ol, "\n"))
		}
	}

	if len(o.tables) != len(t.tables) {
		report("%d tables, the original has %d", len(t.tables), len(o.tables))
	}
	for i := range min(len(o.tables), len(t.tables)) {
		ot, tt := o.tables[i], t.tables[i]
		if len(ot) != len(tt) {
			report("table %d has %d rows, the original %d", i+1, len(tt), len(ot))
			continue
		}
		for j := range ot {
			if ot[j] != tt[j] {
				report("table %d row %d has %d cells keyed %q, the original %d keyed %q",
					i+1, j+1, tt[j].cells, tt[j].key, ot[j].cells, ot[j].key)
			}
		}
	}

	for _, target := range o.links {
		// The original's link to the translation is answered by the
		// translation's link back, checked below.
		if strings.HasPrefix(target, "#") || pathOf(target) == tr.name || linksTo(t.links, target, exists) {
			continue
		}
		report("no link to %s, which the original links to", target)
	}

	for _, d := range []struct {
		doc document
		md  markdown
	}{{orig, o}, {tr, t}} {
		anchors := slugs(d.md.headings)
		for _, target := range d.md.links {
			if a, ok := strings.CutPrefix(target, "#"); ok && !anchors[a] {
				problems = append(problems, fmt.Sprintf("%s: link #%s names none of its headings", d.doc.name, a))
			}
		}
	}

	if !slices.ContainsFunc(t.links, func(l string) bool { return pathOf(l) == orig.name }) {
		report("no link to its original %s", orig.name)
	}
	if !slices.ContainsFunc(o.links, func(l string) bool { return pathOf(l) == tr.name }) {
		problems = append(problems, fmt.Sprintf("%s: no link to its translation %s", orig.name, tr.name))
	}
	return problems
}

// linksTo reports whether links hold target, or its translation: x.md may
// become x.zh-CN.md (any anchor, since anchors follow translated headings)
// when that file exists.
func linksTo(links []string, target string, exists func(string) bool) bool {
	if slices.Contains(links, target) {
		return true
	}
	p := pathOf(target)
	if !strings.HasSuffix(p, ".md") || strings.HasSuffix(p, translationSuffix) {
		return false
	}
	translated := strings.TrimSuffix(p, ".md") + translationSuffix
	return exists(translated) && slices.ContainsFunc(links, func(l string) bool { return pathOf(l) == translated })
}

func pathOf(target string) string {
	p, _, _ := strings.Cut(target, "#")
	return p
}

var shellInfo = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true, "zsh": true}

// withoutComments is a block's lines with shell comments removed (the only
// text a translation may change in a code block) and trailing blanks trimmed.
func withoutComments(b codeBlock) []string {
	out := make([]string, 0, len(b.lines))
	for _, l := range b.lines {
		if shellInfo[b.info] {
			l = stripShellComment(l)
		}
		out = append(out, strings.TrimRight(l, " \t"))
	}
	return out
}

// stripShellComment cuts a line at a # that starts a word outside quotes.
func stripShellComment(line string) string {
	var quote rune
	prev := ' '
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (prev == ' ' || prev == '\t'):
			return line[:i]
		}
		prev = r
	}
	return line
}

// slugs is the set of anchors GitHub gives the headings, duplicates
// numbered -1, -2, … in order.
func slugs(hs []heading) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, h := range hs {
		s := slug(h.text)
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

var inlineLink = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// slug follows GitHub's rule (github-slugger) on the heading's rendered
// text: lower-case, drop every character that is not a letter, number,
// mark, '_' or '-', and turn each space into '-'.
func slug(text string) string {
	text = inlineLink.ReplaceAllString(text, "$1")
	text = strings.NewReplacer("`", "", "**", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// outline shows both heading lists side by side, to find where they part.
func outline(o, t []heading) string {
	var b strings.Builder
	for i := range max(len(o), len(t)) {
		var ol, tl string
		if i < len(o) {
			ol = strings.Repeat("#", o[i].level) + " " + o[i].text
		}
		if i < len(t) {
			tl = strings.Repeat("#", t[i].level) + " " + t[i].text
		}
		fmt.Fprintf(&b, "  %-50s | %s\n", ol, tl)
	}
	return b.String()
}
