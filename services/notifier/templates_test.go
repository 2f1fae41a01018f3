package notifier

import (
	"strings"
	"testing"

	"github.com/kefu-io/kefu/pkg/events"
)

func TestTemplates(t *testing.T) {
	tests := []struct {
		name    string
		kind    string
		text    string
		values  map[string]string
		want    string
		wantErr string
	}{
		{"placeholders are replaced", events.NotifySessionCreated, "客服 {nickname}（{kf_account}）正在为您服务",
			map[string]string{"nickname": "小王", "kf_account": "wang@gh"}, "客服 小王（wang@gh）正在为您服务", ""},
		{"a placeholder may repeat", events.NotifyWaitEstimated, "{ahead}/{ahead}", map[string]string{"ahead": "3"}, "3/3", ""},
		{"other braces are literal text", events.NotifySessionCreated, "{} {Nickname} {nick-name} {nickname", nil, "{} {Nickname} {nick-name} {nickname", ""},
		{"an unknown placeholder is refused", events.NotifySessionCreated, "客服 {nickame}", nil, "", "unknown placeholder {nickame}"},
		{"a placeholder of another kind is refused", events.NotifySessionCreated, "{feedback_url}", nil, "", "unknown placeholder {feedback_url}"},
		{"an empty template is refused", events.NotifySessionClosed, "  ", nil, "", "empty"},
		{"a missing value renders empty", events.NotifySessionSwitched, "to {nickname} from {from_nickname}", map[string]string{"nickname": "B"}, "to B from ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := parseTemplate(tt.kind, tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.render(tt.values); got != tt.want {
				t.Errorf("render = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefaultTemplatesParse(t *testing.T) {
	for _, cfg := range []Config{{}, {TucaoProductID: "12345"}} {
		cfg.setDefaults()
		if err := cfg.Validate(); err != nil {
			t.Errorf("defaults with product %q: %v", cfg.TucaoProductID, err)
		}
	}
}

func TestWaitValues(t *testing.T) {
	tests := []struct {
		name          string
		position      int
		wait, p90     int64
		ahead, minute string
	}{
		{"customers ahead exclude the customer", 4, 600, 900, "3", "10"},
		{"minutes round up", 1, 61, 0, "0", "2"},
		{"a wait under a minute still reads one minute", 1, 0, 0, "0", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := waitValues(events.WaitEstimated{Position: tt.position, WaitSeconds: tt.wait, WaitP90Seconds: tt.p90})
			if v["ahead"] != tt.ahead || v["minutes"] != tt.minute {
				t.Errorf("ahead %s minutes %s, want %s %s", v["ahead"], v["minutes"], tt.ahead, tt.minute)
			}
		})
	}
}
