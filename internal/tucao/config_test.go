package tucao

import (
	"fmt"
	"strings"
	"testing"
)

func TestConfigValidateNamesTheField(t *testing.T) {
	valid := Config{ProductID: "1234", Secret: "tucao123"}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" for valid
	}{
		{"product id and secret are enough", func(*Config) {}, ""},
		{"a missing product id is named", func(c *Config) { c.ProductID = "" }, "ProductID is required"},
		{"a missing secret is named", func(c *Config) { c.Secret = "" }, "Secret is required"},
		{"a product id must be digits", func(c *Config) { c.ProductID = "12/34" }, "ProductID must be decimal digits"},
		{"a base URL must be absolute", func(c *Config) { c.BaseURL = "txc.qq.com" }, "BaseURL"},
		{"a base URL must be http or https", func(c *Config) { c.BaseURL = "ftp://txc.qq.com" }, "BaseURL"},
		{"a base URL must not carry a query", func(c *Config) { c.BaseURL = "https://txc.qq.com/?a=1" }, "BaseURL"},
		{"a negative budget is refused", func(c *Config) { c.RequestsPerMinute = -1 }, "RequestsPerMinute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	err := Config{}.Validate()
	if err == nil || !strings.Contains(err.Error(), "ProductID") || !strings.Contains(err.Error(), "Secret") {
		t.Errorf("Validate = %v, want both ProductID and Secret named", err)
	}
}

func TestNewFillsDefaults(t *testing.T) {
	c, err := New(Config{ProductID: "1234", Secret: "tucao123"})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.BaseURL != DefaultBaseURL || c.cfg.RequestsPerMinute != DefaultRequestsPerMinute ||
		c.cfg.MaxRetries != DefaultMaxRetries || c.cfg.HTTPClient.Timeout != DefaultTimeout || c.cfg.Clock == nil || c.limiter == nil {
		t.Errorf("defaults not applied: %v, timeout %v", c.cfg, c.cfg.HTTPClient.Timeout)
	}
	if _, err := New(Config{Secret: "x"}); err == nil || !strings.Contains(err.Error(), "ProductID") {
		t.Errorf("New without ProductID = %v", err)
	}
}

func TestConfigNeverPrintsTheSecret(t *testing.T) {
	c := Config{ProductID: "1234", Secret: "s3cr3t-value"}
	for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
		if out := fmt.Sprintf(format, c); strings.Contains(out, c.Secret) {
			t.Errorf("%s prints the secret: %s", format, out)
		}
	}
	if err := (Config{Secret: "s3cr3t-value", BaseURL: "bad"}).Validate(); err == nil || strings.Contains(err.Error(), "s3cr3t-value") {
		t.Errorf("Validate error leaks the secret: %v", err)
	}
}
