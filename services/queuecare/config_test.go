package queuecare

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{AppID: "wx1"}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"the stale timeout is 30 minutes", c.StaleAfter, 30 * time.Minute},
		{"dry run is off", c.StaleDryRun, false},
		{"the default leave phrases are used", strings.Join(c.LeavePhrases, ","), "不等了,取消排队,退出排队"},
		{"customers active in the last hour are reconciled", c.ReconcileWindow, time.Hour},
		{"reconciliation spends at most 60 calls a minute", c.ReconcileCallsPerMinute, 60},
		{"the lease outlives two missed ticks", c.LeaseTTL, 30 * time.Second},
		{"records are kept a week", c.StateRetention, 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestZeroConfigWithAnAppIDIsValid(t *testing.T) {
	if err := (Config{AppID: "wx1"}).Validate(); err != nil {
		t.Fatalf("zero values are the defaults, yet: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" = valid
	}{
		{"the app id is required", func(c *Config) { c.AppID = "" }, "AppID"},
		{"a stale timeout under a minute is refused", func(c *Config) { c.StaleAfter = 30 * time.Second }, "StaleAfter"},
		{"the lease must outlive a tick", func(c *Config) { c.LeaseTTL = c.Tick }, "LeaseTTL"},
		{"AckWait must cover two WeChat calls", func(c *Config) { c.AckWait = c.SendTimeout }, "AckWait"},
		{"a leave phrase of punctuation is refused", func(c *Config) { c.LeavePhrases = []string{"！"} }, "leave phrase"},
		{"the feedback line needs its link", func(c *Config) { c.StaleFeedbackLine = "反馈" }, "{link}"},
		{"a custom stale timeout of an hour is fine", func(c *Config) { c.StaleAfter = time.Hour }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{AppID: "wx1"}
			c.setDefaults()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestRenderFillsMinutesAndLink(t *testing.T) {
	got := render(DefaultStaleMessage+"\n"+DefaultStaleFeedbackLine, 45*time.Minute, "https://k.example/f/1")
	if !strings.Contains(got, "45 分钟") || !strings.Contains(got, "https://k.example/f/1") || strings.Contains(got, "{") {
		t.Fatalf("rendered %q", got)
	}
}
