package queuecare

import "testing"

func TestFeedbackLinksAreRedactedInEvents(t *testing.T) {
	tests := []struct{ link, want string }{
		{"https://kefu.example/feedback/eyJvIjoi.sig", "https://kefu.example/feedback/REDACTED"},
		{"https://support.qq.com/product/1234", "https://support.qq.com/product/1234"},
		{"no-slash", "no-slash"},
		{"https://kefu.example/feedback/", "https://kefu.example/feedback/"},
	}
	for _, tt := range tests {
		if got := redactLink(tt.link); got != tt.want {
			t.Errorf("redactLink(%q) = %q, want %q", tt.link, got, tt.want)
		}
	}
}
