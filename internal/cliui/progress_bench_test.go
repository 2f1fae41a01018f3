package cliui_test

import (
	"io"
	"testing"

	"github.com/kefu-io/kefu/internal/cliui"
)

// BenchmarkProgressAdd is the cost a progress line adds to each event of
// a replay, drawn (a terminal) or not.
func BenchmarkProgressAdd(b *testing.B) {
	for _, tc := range []struct {
		name     string
		terminal bool
	}{{"not a terminal", false}, {"terminal", true}} {
		b.Run(tc.name, func(b *testing.B) {
			p := cliui.NewProgress(io.Discard, "kefu replay KEFU_WECHAT", "events", cliui.WithTerminal(tc.terminal))
			p.SetTotal(int64(b.N))
			for b.Loop() {
				p.Add(1)
			}
		})
	}
}
