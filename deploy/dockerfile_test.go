package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerInstruction is one instruction, continuation lines joined.
type dockerInstruction struct {
	cmd  string // upper case: RUN, COPY, …
	args string
	line int
}

type dockerStage struct {
	from, name string // image as written, AS name
	instrs     []dockerInstruction
}

// dockerfile is a parsed Dockerfile: what the tests need, not all of the
// syntax (no heredocs, no escape directive).
type dockerfile struct {
	globalArgs map[string]string
	stages     []dockerStage
}

func parseDockerfile(text string) (dockerfile, error) {
	df := dockerfile{globalArgs: map[string]string{}}
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue // comments and blank lines, also inside a continuation
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		ins := dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		switch {
		case ins.cmd == "FROM":
			var image, name string
			fields := strings.Fields(ins.args)
			for j := 0; j < len(fields); j++ {
				switch {
				case strings.HasPrefix(fields[j], "--"):
				case strings.EqualFold(fields[j], "AS") && j+1 < len(fields):
					name = fields[j+1]
					j++
				default:
					image = fields[j]
				}
			}
			df.stages = append(df.stages, dockerStage{from: image, name: name})
		case len(df.stages) == 0 && ins.cmd == "ARG":
			for name, value := range argDefaults(ins.args) {
				df.globalArgs[name] = value
			}
		case len(df.stages) == 0:
			return df, fmt.Errorf("line %d: %s before FROM", start, ins.cmd)
		default:
			s := &df.stages[len(df.stages)-1]
			s.instrs = append(s.instrs, ins)
		}
	}
	if cur.Len() > 0 {
		return df, errors.New("the last instruction ends with a line continuation")
	}
	if len(df.stages) == 0 {
		return df, errors.New("no FROM")
	}
	return df, nil
}

// argDefaults parses "A=1 B C=2" (ARG without a default maps to "").
func argDefaults(args string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(args) {
		name, value, _ := strings.Cut(f, "=")
		m[name] = strings.Trim(value, `"'`)
	}
	return m
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(string(data))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return df
}

func (df dockerfile) final() dockerStage { return df.stages[len(df.stages)-1] }

func (df dockerfile) stage(name string) (dockerStage, bool) {
	for _, s := range df.stages {
		if s.name == name {
			return s, true
		}
	}
	return dockerStage{}, false
}

// all returns the arguments of every instruction cmd of the stage.
func (s dockerStage) all(cmd string) []dockerInstruction {
	var out []dockerInstruction
	for _, ins := range s.instrs {
		if ins.cmd == cmd {
			out = append(out, ins)
		}
	}
	return out
}

// env is the stage's ENV.
func (s dockerStage) env() map[string]string {
	env := map[string]string{}
	for _, ins := range s.all("ENV") {
		fields := strings.Fields(ins.args)
		if len(fields) > 0 && !strings.Contains(fields[0], "=") { // legacy ENV KEY value
			env[fields[0]] = strings.Join(fields[1:], " ")
			continue
		}
		for _, f := range fields {
			k, v, _ := strings.Cut(f, "=")
			env[k] = strings.Trim(v, `"'`)
		}
	}
	return env
}

// finalEnv is the environment the image gives kefu.
func (df dockerfile) finalEnv() map[string]string { return df.final().env() }

// dockerCopy is a COPY instruction.
type dockerCopy struct {
	from, dest string
	srcs       []string
}

func (s dockerStage) copies() []dockerCopy {
	var out []dockerCopy
	for _, ins := range s.all("COPY") {
		var c dockerCopy
		var rest []string
		for _, f := range strings.Fields(ins.args) {
			if v, ok := strings.CutPrefix(f, "--from="); ok {
				c.from = v
			} else if !strings.HasPrefix(f, "--") {
				rest = append(rest, f)
			}
		}
		if len(rest) >= 2 {
			c.srcs, c.dest = rest[:len(rest)-1], rest[len(rest)-1]
		}
		out = append(out, c)
	}
	return out
}

// finalFiles are the paths the final image has from COPY.
func (df dockerfile) finalFiles() map[string]bool {
	files := map[string]bool{}
	for _, c := range df.final().copies() {
		files[c.dest] = true
	}
	return files
}

// execForm parses an exec-form (JSON array) argument such as CMD's.
func execForm(args string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		return nil, fmt.Errorf("%s is not the exec (JSON array) form: %w", args, err)
	}
	return out, nil
}

// goBuild is one `go build` of a RUN instruction.
type goBuild struct {
	env    map[string]string // NAME=value words before the command
	args   []string          // after "go build"
	output string            // -o
	pkg    string            // the package, last argument
}

var envWord = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// builderCommands expands and splits the build stage's RUN lines: the go
// builds, and the paths they and mkdir produce.
func (s dockerStage) builderCommands(vars map[string]string) (builds []goBuild, produced map[string]bool, err error) {
	produced = map[string]bool{}
	mountFlags := regexp.MustCompile(`^(--\S+\s+)+`)
	for _, ins := range s.all("RUN") {
		cmds, err := shellCommands(mountFlags.ReplaceAllString(ins.args, ""), vars)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", ins.line, err)
		}
		for _, words := range cmds {
			b := goBuild{env: map[string]string{}}
			for len(words) > 0 && envWord.MatchString(words[0]) {
				k, v, _ := strings.Cut(words[0], "=")
				b.env[k] = v
				words = words[1:]
			}
			switch {
			case len(words) >= 2 && words[0] == "go" && words[1] == "build":
				b.args = words[2:]
				b.output = flagValue(b.args, "-o")
				if len(b.args) > 0 {
					b.pkg = b.args[len(b.args)-1]
				}
				builds = append(builds, b)
				produced[b.output] = true
			case len(words) > 0 && words[0] == "mkdir":
				for _, w := range words[1:] {
					if !strings.HasPrefix(w, "-") {
						produced[w] = true
					}
				}
			}
		}
	}
	return builds, produced, nil
}

// shellCommands splits a RUN command line into the commands joined by &&,
// and each into words, expanding $NAME and ${NAME} from vars outside single
// quotes. Shell syntax it does not model (;, |, ||, redirections, unknown
// variables) is an error rather than a guess.
func shellCommands(s string, vars map[string]string) ([][]string, error) {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord := false
	var quote byte
	endWord := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\'':
			quote, inWord = '\'', true
		case c == '"':
			if quote == '"' {
				quote = 0
			} else {
				quote, inWord = '"', true
			}
		case c == '$':
			name, n, err := shellVar(s[i:])
			if err != nil {
				return nil, err
			}
			v, ok := vars[name]
			if !ok {
				return nil, fmt.Errorf("$%s is not an ARG or ENV of the stage", name)
			}
			w.WriteString(v)
			inWord = true
			i += n - 1
		case quote == 0 && (c == ' ' || c == '\t'):
			endWord()
		case quote == 0 && c == '&' && i+1 < len(s) && s[i+1] == '&':
			endWord()
			if len(words) == 0 {
				return nil, fmt.Errorf("empty command before && in %q", s)
			}
			cmds, words = append(cmds, words), nil
			i++
		case quote == 0 && strings.IndexByte(";|<>&`\\", c) >= 0:
			return nil, fmt.Errorf("shell syntax %q is not supported by this check: %q", c, s)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	endWord()
	if len(words) > 0 {
		cmds = append(cmds, words)
	}
	return cmds, nil
}

var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)

// shellVar reads the variable reference at the start of s ("$X", "${X}").
func shellVar(s string) (name string, n int, err error) {
	if rest, ok := strings.CutPrefix(s, "${"); ok {
		end := strings.IndexByte(rest, '}')
		if end < 0 || !shellName.MatchString(rest[:end]) || shellName.FindString(rest[:end]) != rest[:end] {
			return "", 0, fmt.Errorf("unsupported variable reference in %q", s)
		}
		return rest[:end], end + 3, nil
	}
	name = shellName.FindString(s[1:])
	if name == "" {
		return "", 0, fmt.Errorf("lone $ in %q", s)
	}
	return name, len(name) + 1, nil
}

// builderVars are the variables a RUN of stage s sees, with overrides for
// the build arguments Docker would pass.
func (df dockerfile) builderVars(s dockerStage, overrides map[string]string) map[string]string {
	vars := map[string]string{}
	for _, ins := range s.all("ARG") {
		for name, value := range argDefaults(ins.args) {
			if value == "" {
				value = df.globalArgs[name]
			}
			vars[name] = value
		}
	}
	for k, v := range s.env() {
		vars[k] = v
	}
	for k, v := range overrides {
		vars[k] = v
	}
	return vars
}

// The commit and build date the test's build is stamped with.
const (
	testCommit    = "0a1b2c3d4e5f"
	testBuildDate = "2026-12-05T04:00:00Z"
)

// testBuildArgs are what `docker build` passes, for a build on this machine.
func testBuildArgs(version string) map[string]string {
	return map[string]string{"VERSION": version, "COMMIT": testCommit, "BUILD_DATE": testBuildDate, "TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH}
}

// builder is the stage the final image copies from, and its go builds.
func builder(t *testing.T, df dockerfile, version string) (dockerStage, []goBuild, map[string]bool) {
	t.Helper()
	var name string
	for _, c := range df.final().copies() {
		if c.from != "" {
			name = c.from
		}
	}
	s, ok := df.stage(name)
	if !ok {
		t.Fatalf("the final stage copies from %q, which is no stage", name)
	}
	builds, produced, err := s.builderCommands(df.builderVars(s, testBuildArgs(version)))
	if err != nil {
		t.Fatalf("builder stage: %v", err)
	}
	if len(builds) == 0 {
		t.Fatal("the builder stage runs no go build")
	}
	return s, builds, produced
}

// ldflags returns the words of a build's -ldflags.
func (b goBuild) ldflags() []string { return strings.Fields(flagValue(b.args, "-ldflags")) }

const versionSymbol = "github.com/kefu-io/kefu/internal/app.Version"

func TestDockerfile(t *testing.T) {
	df := loadDockerfile(t)
	final := df.final()
	files := df.finalFiles()
	const version = "v9.9.9-deploytest"
	stage, builds, produced := builder(t, df, version)

	t.Run("the final image is distroless static or scratch, run by a non-root user", func(t *testing.T) {
		if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
			t.Errorf("final image %q, want gcr.io/distroless/static-* or scratch", final.from)
		}
		users := final.all("USER")
		if len(users) == 0 {
			t.Fatal("no USER: the image would run as root")
		}
		user, _, _ := strings.Cut(users[len(users)-1].args, ":")
		if user == "0" || user == "root" || user == "" {
			t.Errorf("USER %q is root", users[len(users)-1].args)
		}
	})

	t.Run("it exposes kefu's HTTP port and runs kefu with a role", func(t *testing.T) {
		addr := defaultOf(t, "KEFU_HTTP_ADDR")
		if v, ok := df.finalEnv()["KEFU_HTTP_ADDR"]; ok {
			addr = v
		}
		port := portOf(t, addr)
		exposed := final.all("EXPOSE")
		if len(exposed) != 1 || strings.TrimSuffix(exposed[0].args, "/tcp") != port {
			t.Errorf("EXPOSE %v, want KEFU_HTTP_ADDR's port %s", exposed, port)
		}
		entry, err := execForm(lastArgs(final, "ENTRYPOINT"))
		if err != nil || len(entry) != 1 || !files[entry[0]] {
			t.Errorf("ENTRYPOINT %v (%v): want [the kefu binary the image copies]", entry, err)
		}
		cmd, err := execForm(lastArgs(final, "CMD"))
		if err != nil || len(cmd) != 1 || !deployableRoles[cmd[0]] {
			t.Errorf("CMD %v (%v): want one role of kefu", cmd, err)
		}
	})

	t.Run("the health check runs a binary the image contains", func(t *testing.T) {
		hc := lastArgs(final, "HEALTHCHECK")
		_, cmd, ok := strings.Cut(hc, "CMD ")
		if !ok {
			t.Fatalf("HEALTHCHECK %q has no CMD", hc)
		}
		argv, err := execForm(cmd)
		if err != nil {
			t.Fatalf("HEALTHCHECK: %v (the image has no shell)", err)
		}
		if len(argv) == 0 || !files[argv[0]] {
			t.Errorf("HEALTHCHECK runs %v; the image has %v", argv, sortedKeys(files))
		}
		if len(argv) != 3 || argv[1] != "healthcheck" || !strings.HasPrefix(argv[2], "/") {
			t.Errorf("HEALTHCHECK runs %v, want [kefu healthcheck /path]: the image has no other probe", argv)
		}
	})

	t.Run("ENV sets only variables kefu reads", func(t *testing.T) {
		known := knownVars()
		for name := range df.finalEnv() {
			if strings.HasPrefix(name, "KEFU_") && !known[name] {
				t.Errorf("ENV %s is not a variable kefu reads", name)
			}
		}
	})

	t.Run("the builder is golang at go.mod's Go version", func(t *testing.T) {
		gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
		if m == nil {
			t.Fatal("go.mod has no go directive")
		}
		from, _, err := interpolate(stage.from, func(name string) (string, bool) { v, ok := df.globalArgs[name]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		image, tag, _ := strings.Cut(from, ":")
		want := string(m[1])
		if image != "golang" || (tag != want && !strings.HasPrefix(tag, want+".") && !strings.HasPrefix(tag, want+"-")) {
			t.Errorf("builder %q, want golang:%s (go.mod says go %s)", from, want, want)
		}
	})

	t.Run("modules are downloaded in their own layer before the sources are copied", func(t *testing.T) {
		var order []string
		for _, ins := range stage.instrs {
			var c dockerCopy
			if ins.cmd == "COPY" {
				c = dockerStage{instrs: []dockerInstruction{ins}}.copies()[0]
			}
			switch {
			case len(c.srcs) > 0 && c.srcs[0] == "go.mod" && slices.Contains(c.srcs, "go.sum"):
				order = append(order, "copy go.mod")
			case ins.cmd == "RUN" && strings.Contains(ins.args, "go mod download"):
				order = append(order, "download")
			case slices.Equal(c.srcs, []string{"."}):
				order = append(order, "copy sources")
			}
		}
		if want := []string{"copy go.mod", "download", "copy sources"}; !slices.Equal(order, want) {
			t.Errorf("builder steps %v, want %v", order, want)
		}
	})

	t.Run("the go.mod of every module go.mod replaces with a directory is there for the download", func(t *testing.T) {
		mods := localReplacements(t)
		if len(mods) == 0 {
			t.Fatal("go.mod replaces no module with a directory, but pkg/events is a module of its own")
		}
		copied := map[string]bool{}
		for _, ins := range stage.instrs {
			if ins.cmd == "RUN" && strings.Contains(ins.args, "go mod download") {
				break
			}
			if ins.cmd == "COPY" {
				for _, src := range (dockerStage{instrs: []dockerInstruction{ins}}).copies()[0].srcs {
					copied[path.Clean(src)] = true
				}
			}
		}
		for _, dir := range mods {
			if f := path.Join(dir, "go.mod"); !copied[f] {
				t.Errorf("%s is not copied before `go mod download`, which needs it to read the module graph", f)
			}
		}
	})

	t.Run("go builds are static and trimmed and kefu's stamps the version", func(t *testing.T) {
		stageEnv := stage.env()
		stamped := false
		for _, b := range builds {
			cgo, ok := b.env["CGO_ENABLED"]
			if !ok {
				cgo = stageEnv["CGO_ENABLED"]
			}
			if cgo != "0" {
				t.Errorf("go build %s: CGO_ENABLED=%q, want 0 (a static binary for distroless/static)", b.pkg, cgo)
			}
			if !slices.Contains(b.args, "-trimpath") {
				t.Errorf("go build %s: no -trimpath", b.pkg)
			}
			if ld := b.ldflags(); !slices.Contains(ld, "-s") || !slices.Contains(ld, "-w") {
				t.Errorf("go build %s: -ldflags %q lacks -s -w", b.pkg, ld)
			}
			if _, err := os.Stat(filepath.Join(repoRoot(t), b.pkg)); err != nil {
				t.Errorf("go build %s: %v", b.pkg, err)
			}
			if b.pkg == "./cmd/kefu" {
				stamped = slices.Contains(b.ldflags(), versionSymbol+"="+version)
			}
		}
		if !stamped {
			t.Errorf("no go build of ./cmd/kefu with -ldflags \"-X %s=${VERSION}\"", versionSymbol)
		}
	})

	t.Run("every file copied from the builder is produced by it", func(t *testing.T) {
		for _, c := range final.copies() {
			if c.from == "" {
				continue
			}
			for _, src := range c.srcs {
				if !produced[src] {
					t.Errorf("COPY --from=%s %s: the builder produces only %v", c.from, src, sortedKeys(produced))
				}
			}
		}
	})

	t.Run("the build context keeps every file the build needs", func(t *testing.T) {
		patterns := dockerignorePatterns(t)
		root := repoRoot(t)
		var pkgs []string
		for _, b := range builds {
			pkgs = append(pkgs, b.pkg)
		}
		tmpl := `{{if .Module}}{{if or .Module.Main .Module.Replace}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}`
		cmd := exec.Command("go", append([]string{"list", "-deps", "-f", tmpl}, pkgs...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		needed := []string{"go.mod", "go.sum"}
		for _, dir := range localReplacements(t) {
			needed = append(needed, path.Join(dir, "go.mod"))
		}
		for _, f := range strings.Fields(string(out)) {
			rel, err := filepath.Rel(root, f)
			if err != nil {
				t.Fatal(err)
			}
			needed = append(needed, filepath.ToSlash(rel))
		}
		if len(needed) < 10 {
			t.Fatalf("go list found only %v", needed)
		}
		for _, f := range needed {
			if p, ok := ignoredBy(f, patterns); ok {
				t.Errorf("%s is needed by the build but Dockerfile.dockerignore excludes it (%q)", f, p)
			}
		}
	})
}

// localReplacements are the directories, relative to the repository root,
// of the modules go.mod replaces with a local copy.
func localReplacements(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod edit -json: %v", err)
	}
	var mod struct {
		Replace []struct {
			New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, r := range mod.Replace {
		if r.New.Version == "" && (strings.HasPrefix(r.New.Path, "./") || strings.HasPrefix(r.New.Path, "../")) {
			dirs = append(dirs, path.Clean(r.New.Path))
		}
	}
	return dirs
}

func lastArgs(s dockerStage, cmd string) string {
	all := s.all(cmd)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1].args
}

func dockerignorePatterns(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("Dockerfile.dockerignore: exceptions (%s) are not modelled by this check", line)
		}
		patterns = append(patterns, strings.TrimPrefix(path.Clean(line), "/"))
	}
	return patterns
}

// ignoredBy reports the .dockerignore pattern that excludes file (a slash
// path relative to the context): a pattern excludes the paths it matches
// and everything under them; ** matches any number of directories.
func ignoredBy(file string, patterns []string) (string, bool) {
	parts := strings.Split(file, "/")
	for _, p := range patterns {
		for i := 1; i <= len(parts); i++ {
			if globMatch(strings.Split(p, "/"), parts[:i]) {
				return p, true
			}
		}
	}
	return "", false
}

func globMatch(pattern, parts []string) bool {
	if len(pattern) == 0 {
		return len(parts) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if globMatch(pattern[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	if ok, _ := path.Match(pattern[0], parts[0]); !ok {
		return false
	}
	return globMatch(pattern[1:], parts[1:])
}

func TestIgnoredBy(t *testing.T) {
	patterns := []string{".git", "**/testdata", "kefu", "deploy/k8s", "**/*.test"}
	tests := []struct {
		file, want string
	}{
		{file: ".git/HEAD", want: ".git"},
		{file: "internal/wechat/testdata/x.xml", want: "**/testdata"},
		{file: "testdata/a", want: "**/testdata"},
		{file: "kefu", want: "kefu"},
		{file: "cmd/kefu/main.go", want: ""},
		{file: "deploy/k8s/ingest.yaml", want: "deploy/k8s"},
		{file: "deploy/nats/nats.conf", want: ""},
		{file: "store.test", want: "**/*.test"},
		{file: "internal/app/app.go", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, _ := ignoredBy(tt.file, patterns)
			if got != tt.want {
				t.Fatalf("ignoredBy(%q) = %q, want %q", tt.file, got, tt.want)
			}
		})
	}
}

func TestShellCommands(t *testing.T) {
	vars := map[string]string{"V": "v1.0", "EMPTY": ""}
	tests := []struct {
		name, in string
		want     [][]string
		wantErr  bool
	}{
		{name: "words split on blanks", in: "go build -o /out/x ./cmd/x", want: [][]string{{"go", "build", "-o", "/out/x", "./cmd/x"}}},
		{name: "&& separates commands", in: "a b && c", want: [][]string{{"a", "b"}, {"c"}}},
		{name: "double quotes keep blanks and expand variables", in: `x "-s -w -X p.V=${V}"`, want: [][]string{{"x", "-s -w -X p.V=v1.0"}}},
		{name: "single quotes are literal", in: `x '$V'`, want: [][]string{{"x", "$V"}}},
		{name: "bare variables expand", in: "GOOS=$V go", want: [][]string{{"GOOS=v1.0", "go"}}},
		{name: "an empty variable leaves an assignment empty", in: "GOOS=${EMPTY} go", want: [][]string{{"GOOS=", "go"}}},
		{name: "an unknown variable is an error", in: "x ${NOPE}", wantErr: true},
		{name: "a default expansion is not modelled", in: "x ${V:-d}", wantErr: true},
		{name: "a semicolon is not modelled", in: "a; b", wantErr: true},
		{name: "a pipe is not modelled", in: "a | b", wantErr: true},
		{name: "an unterminated quote is an error", in: `a "b`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := shellCommands(tt.in, vars)
			if (err != nil) != tt.wantErr {
				t.Fatalf("shellCommands(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Fatalf("shellCommands(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestDockerfileBuild runs the Dockerfile's go build lines with exactly
// their flags and checks what comes out; the first run compiles everything
// with -trimpath, later ones come from the build cache.
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kefu with the Dockerfile's flags; skipped with -short")
	}
	df := loadDockerfile(t)
	const version = "v0.0.0-deploytest"
	stage, builds, _ := builder(t, df, version)
	root := repoRoot(t)
	dir := t.TempDir()
	binaries := map[string]string{} // package → built file
	for _, b := range builds {
		args := slices.Clone(b.args)
		i := slices.Index(args, "-o")
		local := filepath.Join(dir, path.Base(b.output))
		args[i+1] = local
		cmd := exec.Command("go", append([]string{"build"}, args...)...)
		cmd.Dir = root
		cmd.Env = os.Environ()
		for k, v := range stage.env() {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		for k, v := range b.env {
			if v == "" {
				continue // GOOS= and GOARCH= unset: this machine's
			}
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %q: %v\n%s", args, err, out)
		}
		binaries[b.pkg] = local
	}
	kefu := binaries["./cmd/kefu"]
	if kefu == "" || len(binaries) != 1 {
		t.Fatalf("the Dockerfile builds %v, want ./cmd/kefu alone (the health check is `kefu healthcheck`)", sortedKeys(binaries))
	}

	t.Run("the binaries are statically linked", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("ELF check on Linux only")
		}
		for pkg, file := range binaries {
			f, err := elf.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s has a dynamic loader: it would not run on distroless/static", pkg)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s links %v", pkg, libs)
			}
			f.Close()
		}
	})

	t.Run("kefu reports the version it was stamped with", func(t *testing.T) {
		out, err := exec.Command(kefu, "version").Output()
		if err != nil {
			t.Fatalf("kefu version: %v", err)
		}
		want := fmt.Sprintf("kefu %s (commit %s, built %s, %s)", version, testCommit, testBuildDate, runtime.Version())
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("kefu version = %q, want %q", got, want)
		}
	})

	t.Run("every deployed role is a role of the binary", func(t *testing.T) {
		out, err := exec.Command(kefu, "help").Output()
		if err != nil {
			t.Fatalf("kefu help: %v", err)
		}
		listed := helpRoles(string(out))
		if len(listed) == 0 {
			t.Fatalf("kefu help lists no roles:\n%s", out)
		}
		for role, where := range deployedRoles(t) {
			switch {
			case listed[role]:
				if pendingRoles[role] {
					t.Logf("kefu help now lists %s: its pendingRoles entry can go", role)
				}
			case pendingRoles[role]:
				t.Logf("role %s (%v) is pending: kefu help does not list it yet", role, where)
			default:
				t.Errorf("%v run role %q, which kefu help does not list (%v)", where, role, sortedKeys(listed))
			}
		}
	})

	t.Run("the image's health check passes on a running kefu and fails once it stopped", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("needs SIGTERM")
		}
		httpPort, natsPort := freePort(t), freePort(t)
		cmd := exec.Command(kefu, "all")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "KEFU_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "KEFU_DATA_DIR="+t.TempDir(), "KEFU_HTTP_ADDR=127.0.0.1:"+httpPort,
			"KEFU_NATS_LISTEN=127.0.0.1:"+natsPort, "KEFU_LOG_LEVEL=warn")
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		stopped := false
		t.Cleanup(func() {
			if !stopped {
				cmd.Process.Kill()
				<-done
			}
		})
		// The image runs the check with kefu's KEFU_HTTP_ADDR (":8080");
		// here only the port differs.
		probe := func(p string) (int, string) {
			hc := exec.Command(kefu, "healthcheck", p)
			hc.Env = []string{"KEFU_HTTP_ADDR=:" + httpPort}
			out, err := hc.CombinedOutput()
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return exit.ExitCode(), string(out)
			}
			if err != nil {
				t.Fatalf("run kefu healthcheck: %v", err)
			}
			return 0, string(out)
		}
		ready := false
		for deadline := time.Now().Add(60 * time.Second); !ready && time.Now().Before(deadline); {
			select {
			case err := <-done:
				stopped = true
				t.Fatalf("kefu all exited before it was ready: %v\n%s", err, logs.String())
			case <-time.After(100 * time.Millisecond):
			}
			code, _ := probe("/readyz")
			ready = code == 0
		}
		if !ready {
			code, out := probe("/readyz")
			cmd.Process.Kill()
			<-done
			stopped = true
			t.Fatalf("kefu healthcheck /readyz still exits %d (%s) after 60s; kefu logs:\n%s", code, out, logs.String())
		}
		if code, out := probe("/healthz"); code != 0 {
			t.Errorf("kefu healthcheck /healthz exits %d on a running kefu: %s", code, out)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			stopped = true
			if err != nil {
				t.Errorf("kefu all after SIGTERM: %v\n%s", err, logs.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("kefu all did not stop within 60s of SIGTERM\n%s", logs.String())
		}
		if code, _ := probe("/healthz"); code != 1 {
			t.Errorf("kefu healthcheck /healthz exits %d once kefu stopped, want 1", code)
		}
	})
}

// helpRoles parses the "Roles" section of `kefu help`.
func helpRoles(help string) map[string]bool {
	roles := map[string]bool{}
	_, section, ok := strings.Cut(help, "\nRoles")
	if !ok {
		return roles
	}
	lines := strings.Split(section, "\n")[1:]
	for _, line := range lines {
		if strings.TrimSpace(line) == "" {
			break
		}
		if fields := strings.Fields(line); len(fields) > 0 {
			roles[fields[0]] = true
		}
	}
	return roles
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return portOf(t, l.Addr().String())
}
