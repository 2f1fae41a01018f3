package app

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/cliui"
	"github.com/kefu-io/kefu/internal/config"
)

func TestLogFormatFollowsTheTerminalUnlessChosen(t *testing.T) {
	const ansiEscape = "\x1b["
	tests := []struct {
		name   string
		format string // KEFU_LOG_FORMAT
		term   cliui.Terminal
		json   bool
		colour bool
	}{
		{"unset on a colour terminal: console with colour", "", cliui.Terminal{Is: true, Color: true}, false, true},
		{"unset on a terminal without colour: console, plain", "", cliui.Terminal{Is: true}, false, false},
		{"unset in a pipe or container: json", "", cliui.Terminal{}, true, false},
		{"json forced on a terminal", "json", cliui.Terminal{Is: true, Color: true}, true, false},
		{"console forced in a pipe: no colour codes", "console", cliui.Terminal{}, false, false},
		{"console forced on a colour terminal", "console", cliui.Terminal{Is: true, Color: true}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load(func(k string) string {
				if k == "KEFU_LOG_FORMAT" {
					return tt.format
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			log, err := buildLogger(cfg, &out, tt.term)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("backfill started", zap.String("product", "1234"))
			line := out.String()
			var obj map[string]any
			isJSON := json.Unmarshal([]byte(line), &obj) == nil
			if isJSON != tt.json {
				t.Fatalf("JSON %v, want %v: %q", isJSON, tt.json, line)
			}
			if !isJSON && !strings.Contains(line, "INFO") {
				t.Fatalf("console line without its level: %q", line)
			}
			if got := strings.Contains(line, ansiEscape); got != tt.colour {
				t.Fatalf("colour %v, want %v: %q", got, tt.colour, line)
			}
		})
	}
}

func TestLogTimesAreRFC3339WithTheirOffset(t *testing.T) {
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log, err := buildLogger(cfg, &out, cliui.Terminal{})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("x")
	var line struct{ TS string }
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339, line.TS); err != nil {
		t.Fatalf("ts %q is not RFC 3339: %v", line.TS, err)
	}
	at := time.Date(2026, 12, 5, 15, 14, 59, 0, time.FixedZone("CST", 8*3600))
	if got := at.Format(logTimeLayout); got != "2026-12-05T15:14:59.000+08:00" {
		t.Fatalf("a time in China is logged as %q", got)
	}
}
