//go:build !unix

package replay_test

import (
	"testing"
	"time"
)

// processCPU is not measured here; the cpu-ns/event figure reads 0.
func processCPU(*testing.B) time.Duration { return 0 }
