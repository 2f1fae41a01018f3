package queuecare_test

import (
	"net/http"
	"testing"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/services/queuecare"
)

// The notifier's session mark shares the customer's record but is not part
// of the answer docs/openapi.yaml defines (additionalProperties: false).
func TestCustomerEndpointLeavesOutTheNotifiersSessionMark(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	h.say("c9", "你好")
	st := h.waitState("c9", "known", func(st customers.State) bool { return !st.LastActivity.IsZero() })
	if err := h.svc.States().RecordSession(h.ctx, "c9", true, st.LastActivity); err != nil {
		t.Fatal(err)
	}
	if got := h.state("c9").LastSession; got.State != customers.SessionOpen {
		t.Fatalf("mark not stored: %+v", got)
	}
	var answer map[string]any
	if code := h.get("/api/kf/customers/c9", &answer); code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	if _, ok := answer["last_session"]; ok || answer["status"] == nil {
		t.Errorf("answer %v", answer)
	}
}
