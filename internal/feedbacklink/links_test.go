package feedbacklink

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFeedbackLinksAreRedactedInEvents(t *testing.T) {
	tests := []struct{ link, want string }{
		{"https://kefu.example/feedback/eyJvIjoi.sig", "https://kefu.example/feedback/REDACTED"},
		{"https://support.qq.com/product/1234", "https://support.qq.com/product/1234"},
		{"no-slash", "no-slash"},
		{"https://kefu.example/feedback/", "https://kefu.example/feedback/"},
	}
	for _, tt := range tests {
		if got := Redact(tt.link); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.link, got, tt.want)
		}
	}
}

// The links of each configuration: none without a product, the Tucao page
// without a public URL, kefu's page with a token that verifies otherwise.
func TestLinks(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	base := LinksConfig{TucaoURL: "https://support.qq.com/product/", WeChatSecret: "wechat-secret", TTL: time.Hour,
		Now: func() time.Time { return now }}

	none, err := NewLinks(base)
	if err != nil || none.Link("o-1") != "" || none.Signer() != nil || none.TucaoPage() != "" {
		t.Fatalf("without a product: %+v, %v", none, err)
	}

	c := base
	c.ProductID = "12 34"
	tucao, err := NewLinks(c)
	if err != nil {
		t.Fatal(err)
	}
	if link, redacted := tucao.URL("o-1", nil); link != "https://support.qq.com/product/12%2034" || redacted != link || tucao.Signer() != nil {
		t.Fatalf("without a public URL: %q %q", link, redacted)
	}

	c.PublicURL = "https://kefu.example"
	signed, err := NewLinks(c)
	if err != nil {
		t.Fatal(err)
	}
	sess := ClosedSession(closedEvent())
	link, redacted := signed.URL("o-1", sess)
	if !strings.HasPrefix(link, "https://kefu.example/feedback/") || redacted != "https://kefu.example/feedback/REDACTED" || Redact(link) != redacted {
		t.Fatalf("signed: %q %q", link, redacted)
	}
	got, err := signed.Signer().VerifyLink(strings.TrimPrefix(link, "https://kefu.example/feedback/"))
	if err != nil || got.Pseudonym == "" || got.Session == nil || got.Session.ID != sess.ID {
		t.Fatalf("VerifyLink = %+v, %v", got, err)
	}
	if signed.TucaoPage() != "https://support.qq.com/product/12%2034" {
		t.Fatalf("TucaoPage = %q", signed.TucaoPage())
	}

	c.WeChatSecret, c.LinkSecret = "", "short"
	if _, err := NewLinks(c); !errors.Is(err, ErrShortSecret) {
		t.Fatalf("a short secret: %v", err)
	}
}
