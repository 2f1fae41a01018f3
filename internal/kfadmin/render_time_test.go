package kfadmin

import (
	"testing"
	"time"
)

func TestTimesAreRFC3339WithTheirOffset(t *testing.T) {
	at := time.Date(2026, 12, 5, 7, 14, 59, 0, time.UTC).Unix()
	tests := []struct {
		loc  *time.Location
		want string
	}{
		{time.UTC, "2026-12-05T07:14:59Z"},
		{time.FixedZone("CST", 8*3600), "2026-12-05T15:14:59+08:00"},
		{time.FixedZone("", -5*3600), "2026-12-05T02:14:59-05:00"},
	}
	for _, tt := range tests {
		if got := clock(at, time.Now().In(tt.loc)); got != tt.want {
			t.Errorf("in %v: %q, want %q", tt.loc, got, tt.want)
		}
	}
	if got := clock(0, time.Now()); got != "-" {
		t.Errorf("an unknown time shows %q, want -", got)
	}
}
