package config_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/config"
)

// TestEveryVariableIsInTheTable reads kefu's source: every KEFU_* variable
// a non-test file reads through a getenv is a row of the table (the rest
// read theirs through Load).
func TestEveryVariableIsInTheTable(t *testing.T) {
	read := regexp.MustCompile(`[Gg]etenv\("(KEFU_[A-Z0-9_]+)"\)`)
	found := map[string]string{}
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// bench holds the benchmarks' tools, whose KEFU_TEST_* are theirs.
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "bench" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "test/") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range read.FindAllStringSubmatch(string(src), -1) {
			found[m[1]] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found["KEFU_SERVER_TIMEOUT"] == "" || found["KEFU_HTTP_ADDR"] == "" {
		t.Fatalf("the scan misses variables known to be read: %v", found)
	}
	for name, path := range found {
		if _, ok := config.Lookup(name); !ok {
			t.Errorf("%s (read in %s) is not in config.Vars", name, path)
		}
	}
}

func TestRowsSayTheirFormTheirGroupAndTheirUse(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range config.Vars {
		if !strings.HasPrefix(v.Name, "KEFU_") || v.Type == "" || v.Group == "" || v.Help == "" {
			t.Errorf("%q: name, type %q, group %q and help %q are all needed", v.Name, v.Type, v.Group, v.Help)
		}
		for _, name := range v.Names() {
			if seen[name] {
				t.Errorf("%s is in the table twice", name)
			}
			seen[name] = true
		}
		if v.Members != nil && !strings.HasSuffix(v.Name, "<KIND>") {
			t.Errorf("family %s: want a name ending in <KIND>", v.Name)
		}
		if got := strings.HasPrefix(v.Type, "secret"); got != secretName.MatchString(v.Name) {
			t.Errorf("%s is of type %q: a secret's name says so and its type is secret", v.Name, v.Type)
		}
	}
}

var secretName = regexp.MustCompile(`SECRET|TOKEN|AES_KEY|PASSWORD|DSN|SEED`)

// helpDefaults reads WriteHelp's output: variable → the default it prints.
func helpDefaults(t *testing.T) map[string]string {
	t.Helper()
	var out bytes.Buffer
	config.WriteHelp(&out)
	line := regexp.MustCompile(`^  (KEFU_\S+) +.* \(default (.+)\)$`)
	printed := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("help line %q is not `  NAME help (default D)`", l)
		}
		printed[m[1]] = m[2]
	}
	return printed
}

// TestHelpPrintsWhatLoadYields: the default `kefu help` prints for a row
// is what Load yields with nothing set — setting every variable to its
// printed default (leaving "unset" ones unset) changes nothing.
func TestHelpPrintsWhatLoadYields(t *testing.T) {
	printed := helpDefaults(t)
	if len(printed) != len(config.Vars) {
		t.Fatalf("help prints %d variables, the table has %d", len(printed), len(config.Vars))
	}
	want, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{}
	for _, v := range config.Vars {
		def, ok := printed[v.Name]
		if !ok {
			t.Errorf("help misses %s", v.Name)
			continue
		}
		if def == "unset" {
			if v.Default != "" {
				t.Errorf("%s: help prints unset, Load takes %q", v.Name, v.Default)
			}
			continue
		}
		one := map[string]string{}
		for _, name := range v.Names() {
			one[name], all[name] = def, def
		}
		got, err := config.Load(env(one))
		if err != nil {
			t.Errorf("%s: the printed default %q does not load: %v", v.Name, def, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s=%q, the printed default, loads differently from leaving it unset", v.Name, def)
		}
	}
	if got, err := config.Load(env(all)); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("every printed default set at once: err %v, config differs: %v", err, !reflect.DeepEqual(got, want))
	}
}

// TestTheNotifiersSettingsAreTyped: the notifier's variables load into
// typed fields with their defaults, and a bad value is one line naming the
// variable and the form wanted.
func TestTheNotifiersSettingsAreTyped(t *testing.T) {
	c, err := config.Load(env(map[string]string{
		"KEFU_NOTIFY_DISABLE":                  " session_switched, ,wait_estimated",
		"KEFU_NOTIFY_TEMPLATE_SESSION_CREATED": "您好 {nickname}",
		"KEFU_FEEDBACK_LINK_SECRET":            "a-link-secret-of-some-length",
	}))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.NotifyRateLimit != 100 || c.NotifyWaitMinInterval.String() != "3m0s" || c.FeedbackLinkTTL.String() != "168h0m0s":
		t.Errorf("defaults: rate %v, wait %v, ttl %v", c.NotifyRateLimit, c.NotifyWaitMinInterval, c.FeedbackLinkTTL)
	case c.FeedbackNickname != "微信用户" || c.NotifySendAsAgent:
		t.Errorf("defaults: nickname %q, as agent %v", c.FeedbackNickname, c.NotifySendAsAgent)
	case strings.Join(c.NotifyDisable, "|") != "session_switched|wait_estimated":
		t.Errorf("disabled %q", c.NotifyDisable)
	case len(c.NotifyTemplate) != 1 || c.NotifyTemplate["session_created"] != "您好 {nickname}":
		t.Errorf("templates %v", c.NotifyTemplate)
	case c.FeedbackLinkSecret.Value() != "a-link-secret-of-some-length" || c.FeedbackLinkSecret.String() != "***":
		t.Errorf("the link secret is a Secret: %q", c.FeedbackLinkSecret.String())
	}
	for _, off := range []string{"off", "0", " off "} {
		c, err := config.Load(env(map[string]string{"KEFU_NOTIFY_RATE_LIMIT": off}))
		if err != nil || c.NotifyRateLimit >= 0 {
			t.Errorf("KEFU_NOTIFY_RATE_LIMIT=%q: rate %v, err %v; want no limit (negative)", off, c.NotifyRateLimit, err)
		}
	}
	for name, value := range map[string]string{
		"KEFU_NOTIFY_RATE_LIMIT":        "fast",
		"KEFU_FEEDBACK_LINK_TTL":        "-1h",
		"KEFU_NOTIFY_SEND_AS_AGENT":     "maybe",
		"KEFU_NOTIFY_WAIT_MIN_INTERVAL": "soon",
	} {
		_, err := config.Load(env(map[string]string{name: value}))
		if err == nil || !strings.HasPrefix(err.Error(), name+": want ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%q: error %v, want one line naming the variable and the form wanted", name, value, err)
		}
	}
}

// TestErrorsNeverPrintASecret: a secret refused names its variable and the
// form wanted, not its value.
func TestErrorsNeverPrintASecret(t *testing.T) {
	for name, value := range map[string]string{
		"KEFU_WECHAT_AES_KEY":       "s3cr3t-but-too-short",
		"KEFU_TUCAO_WEBHOOK_SECRET": "s3cr3t/with/slashes/and-long-enough",
	} {
		_, err := config.Load(env(map[string]string{name: value}))
		if err == nil || !strings.HasPrefix(err.Error(), name+": want") || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: error %v, want one naming the variable and the form, without the value", name, err)
		}
	}
}

// TestRolesTakeNoFlagForFamiliesNorTheCLIsVariables: KEFU_SERVER is kefu
// kf's, not a role's; Load leaves it alone and Set does not know it.
func TestRolesTakeNoFlagForFamiliesNorTheCLIsVariables(t *testing.T) {
	for _, name := range []string{"KEFU_SERVER", "KEFU_SERVER_TIMEOUT", "KEFU_NOTIFY_TEMPLATE_<KIND>"} {
		v, ok := config.Lookup(name)
		if name == "KEFU_NOTIFY_TEMPLATE_<KIND>" {
			v, ok = config.Lookup("KEFU_NOTIFY_TEMPLATE_WAIT_ESTIMATED")
		}
		if !ok || v.Flag() {
			t.Errorf("%s: in the table %v, a role flag %v; want in the table, no flag", name, ok, v.Flag())
		}
	}
	if _, err := config.Load(env(map[string]string{"KEFU_SERVER_TIMEOUT": "never"})); err != nil {
		t.Errorf("roles must not read kefu kf's KEFU_SERVER_TIMEOUT: %v", err)
	}
	var c config.Config
	if err := c.Set("KEFU_SERVER", "http://x"); err == nil {
		t.Error("Set took KEFU_SERVER, a variable of kefu kf")
	}
	if err := c.Set("KEFU_NOTIFY_TEMPLATE_SESSION_CLOSED", "再见"); err != nil || c.NotifyTemplate["session_closed"] != "再见" {
		t.Errorf("Set of a family member: err %v, templates %v", err, c.NotifyTemplate)
	}
}
