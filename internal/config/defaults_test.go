package config

import (
	"testing"
	"time"
)

func TestPositiveOr(t *testing.T) {
	if got := PositiveOr(0, 5); got != 5 {
		t.Errorf("PositiveOr(0, 5) = %d, want 5", got)
	}
	if got := PositiveOr(-time.Second, time.Minute); got != time.Minute {
		t.Errorf("PositiveOr(-1s, 1m) = %s, want 1m", got)
	}
	if got := PositiveOr(0.25, 0.3); got != 0.25 {
		t.Errorf("PositiveOr(0.25, 0.3) = %g, want 0.25", got)
	}
}
