package notifier

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateNamesTheSetting(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"defaults are valid", Config{}, ""},
		{"a public URL without product needs no secret", Config{PublicURL: "https://kefu.example.com"}, ""},
		{"signing links needs a secret", Config{PublicURL: "https://kefu.example.com", TucaoProductID: "1"}, "KEFU_FEEDBACK_LINK_SECRET"},
		{"the WeChat secret can stand in", Config{PublicURL: "https://kefu.example.com", TucaoProductID: "1", WeChatSecret: "s"}, ""},
		{"a short link secret is refused", Config{PublicURL: "https://k.example.com", TucaoProductID: "1", FeedbackLinkSecret: "short"}, "KEFU_FEEDBACK_LINK_SECRET"},
		{"the public URL must be absolute", Config{PublicURL: "kefu.example.com"}, "KEFU_PUBLIC_URL"},
		{"the product id is digits", Config{TucaoProductID: "12/../x"}, "KEFU_TUCAO_PRODUCT_ID"},
		{"a feedback link in a template needs a product", Config{Templates: Templates{SessionClosed: "谢谢 {feedback_url}"}}, "KEFU_TUCAO_PRODUCT_ID"},
		{"unless the kind is off", Config{Templates: Templates{SessionClosed: "谢谢 {feedback_url}"}, Disabled: []string{"session_closed"}}, ""},
		{"an unknown kind cannot be disabled", Config{Disabled: []string{"session_opened"}}, "KEFU_NOTIFY_DISABLE"},
		{"Tucao nicknames have at most 8 characters", Config{FeedbackNickname: "一二三四五六七八九"}, "KEFU_FEEDBACK_NICKNAME"},
		{"AckWait must cover a whole send", Config{AckWait: 5 * time.Second, SendTimeout: 5 * time.Second}, "AckWait"},
		{"a rate limit the handlers cannot wait for is refused", Config{RateLimit: 0.5}, "KEFU_NOTIFY_RATE_LIMIT"},
		{"a bad template placeholder is named", Config{Templates: Templates{WaitEstimated: "{minute}"}}, "{minute}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestLoadEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "templates.json")
	if err := os.WriteFile(file, []byte(`{"session_created": "您好，{nickname} 为您服务", "wait_estimated": "排队中 {position}"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"KEFU_PUBLIC_URL":                     "https://kefu.example.com/",
		"KEFU_TUCAO_PRODUCT_ID":               "4242",
		"KEFU_WECHAT_SECRET":                  "wechat-secret",
		"KEFU_FEEDBACK_LINK_TTL":              "48h",
		"KEFU_NOTIFY_RATE_LIMIT":              "off",
		"KEFU_NOTIFY_WAIT_MIN_INTERVAL":       "5m",
		"KEFU_NOTIFY_DISABLE":                 "session_switched, wait_estimated",
		"KEFU_NOTIFY_TEMPLATES":               file,
		"KEFU_NOTIFY_TEMPLATE_WAIT_ESTIMATED": "第 {position} 位",
		"KEFU_NOTIFY_SEND_AS_AGENT":           "true",
	}
	cfg, err := LoadEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	switch {
	case cfg.PublicURL != "https://kefu.example.com" || cfg.TucaoProductID != "4242" || cfg.WeChatSecret != "wechat-secret":
		t.Errorf("links: %q %q", cfg.PublicURL, cfg.TucaoProductID)
	case cfg.FeedbackLinkTTL != 48*time.Hour || cfg.Wait.MinInterval != 5*time.Minute || cfg.RateLimit >= 0 || !cfg.SendAsAgent:
		t.Errorf("values: ttl %v interval %v rate %v agent %v", cfg.FeedbackLinkTTL, cfg.Wait.MinInterval, cfg.RateLimit, cfg.SendAsAgent)
	case cfg.Templates.SessionCreated != "您好，{nickname} 为您服务":
		t.Errorf("the file's template was not read: %q", cfg.Templates.SessionCreated)
	case cfg.Templates.WaitEstimated != "第 {position} 位":
		t.Errorf("the variable must win over the file: %q", cfg.Templates.WaitEstimated)
	case cfg.Templates.SessionClosed != DefaultSessionClosed:
		t.Errorf("a kind the file omits keeps its default: %q", cfg.Templates.SessionClosed)
	case strings.Join(cfg.Disabled, ",") != "session_switched,wait_estimated":
		t.Errorf("disabled %v", cfg.Disabled)
	case cfg.FeedbackAvatarURL != "https://kefu.example.com/feedback/avatar.png":
		t.Errorf("avatar %q", cfg.FeedbackAvatarURL)
	}

	for name, value := range map[string]string{
		"KEFU_NOTIFY_RATE_LIMIT":        "fast",
		"KEFU_FEEDBACK_LINK_TTL":        "-1h",
		"KEFU_NOTIFY_SEND_AS_AGENT":     "maybe",
		"KEFU_NOTIFY_TEMPLATES":         filepath.Join(t.TempDir(), "missing.json"),
		"KEFU_NOTIFY_WAIT_MIN_INTERVAL": "soon",
	} {
		_, err := LoadEnv(func(k string) string {
			if k == name {
				return value
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %v, want one naming the variable", name, value, err)
		}
	}
}
