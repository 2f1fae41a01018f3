package console

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// The whole state of a 10,000-customer queue, as every new live stream and
// every page load gets it.
func BenchmarkSnapshot10k(b *testing.B) {
	h := newHub(newState(time.Minute), 10)
	now := time.Now()
	for i := range 10000 {
		ev, _ := json.Marshal(events.WaitEstimated{Meta: events.Meta{OccurredAt: now}, OpenID: fmt.Sprintf("c-%05d", i), Position: i + 1, WaitSeconds: int64(i), WaitP90Seconds: int64(2 * i)})
		h.update(func(s *state, o *ops) { s.applyKF(events.SubjectWaitEstimated, ev, o) })
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := h.subscribe(); err != nil {
			b.Fatal(err)
		}
		h.closeAll()
	}
}
