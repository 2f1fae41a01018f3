package notifier

import (
	"reflect"
	"testing"

	"github.com/kefu-io/kefu/internal/config"
)

// TestTheTablesDefaultsAreTheNotifiers: with nothing set, the notifier's
// view of kefu's configuration already holds the notifier's own defaults,
// so what `kefu help` prints (the table's) is what the notifier does.
func TestTheTablesDefaultsAreTheNotifiers(t *testing.T) {
	kc, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	var want Config
	want.setDefaults()
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"KEFU_NOTIFY_RATE_LIMIT", got.RateLimit, want.RateLimit},
		{"KEFU_NOTIFY_WAIT_MIN_INTERVAL", got.Wait.MinInterval, want.Wait.MinInterval},
		{"KEFU_FEEDBACK_LINK_TTL", got.FeedbackLinkTTL, want.FeedbackLinkTTL},
		{"KEFU_FEEDBACK_NICKNAME", got.FeedbackNickname, want.FeedbackNickname},
		{"KEFU_FEEDBACK_AVATAR_URL", got.FeedbackAvatarURL, want.FeedbackAvatarURL},
		{"KEFU_PUBLIC_URL", got.PublicURL, want.PublicURL},
		{"KEFU_NOTIFY_SEND_AS_AGENT", got.SendAsAgent, want.SendAsAgent},
		{"KEFU_NOTIFY_DISABLE", got.Disabled, want.Disabled},
	} {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s: the table's default gives %v, the notifier's is %v", f.name, f.got, f.want)
		}
	}
	for _, kind := range Kinds {
		if text := got.Templates.byKind()[kind]; text != "" {
			t.Errorf("template %s: %q with nothing set, want the notifier's default", kind, text)
		}
	}
}

// TestFromConfigTakesEveryNotifierSetting: each setting of the table
// reaches the notifier's Config.
func TestFromConfigTakesEveryNotifierSetting(t *testing.T) {
	kc, err := config.Load(func(name string) string {
		return map[string]string{
			"KEFU_FEEDBACK_LINK_SECRET":            "0123456789abcdef-link",
			"KEFU_FEEDBACK_NICKNAME":               "顾客",
			"KEFU_FEEDBACK_AVATAR_URL":             "https://cdn.example.com/a.png",
			"KEFU_NOTIFY_RATE_LIMIT":               "7.5",
			"KEFU_NOTIFY_TEMPLATE_SESSION_CLOSED":  "再见",
			"KEFU_NOTIFY_TEMPLATE_SESSION_CREATED": "你好",
		}[name]
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromConfig(kc)
	switch {
	case err != nil:
		t.Fatal(err)
	case c.FeedbackLinkSecret != "0123456789abcdef-link" || c.FeedbackNickname != "顾客" || c.FeedbackAvatarURL != "https://cdn.example.com/a.png":
		t.Errorf("feedback settings: %q %q %q", c.FeedbackLinkSecret, c.FeedbackNickname, c.FeedbackAvatarURL)
	case c.RateLimit != 7.5:
		t.Errorf("rate %v", c.RateLimit)
	case c.Templates.SessionClosed != "再见" || c.Templates.SessionCreated != "你好" || c.Templates.WaitEstimated != "":
		t.Errorf("templates %+v", c.Templates)
	}
}
