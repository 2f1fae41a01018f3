package customers

import (
	"context"
	"testing"
	"time"
)

func TestSessionMarkApply(t *testing.T) {
	open := SessionMark{State: SessionOpen, At: t0}
	closed := SessionMark{State: SessionClosed, At: t0}
	const created, switched, closes = true, true, false
	tests := []struct {
		name    string
		mark    SessionMark
		open    bool
		at      time.Time
		want    string
		changed bool
	}{
		{"created opens the session", SessionMark{}, created, t0, SessionOpen, true},
		{"switched keeps it open", SessionMark{}, switched, t0, SessionOpen, true},
		{"closed closes it", open, closes, t0.Add(time.Second), SessionClosed, true},
		{"an older event handled late changes nothing", closed, created, t0.Add(-time.Second), SessionClosed, false},
		{"in the same second an open session wins over a close", open, closes, t0, SessionOpen, false},
		{"in the same second a create after a close opens", closed, created, t0, SessionOpen, true},
		{"the same event twice is a no-op", open, created, t0, SessionOpen, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.mark
			changed := got.Apply(tt.open, tt.at)
			if got.State != tt.want || changed != tt.changed {
				t.Errorf("Apply = %q, %v; want %q, %v", got.State, changed, tt.want, tt.changed)
			}
		})
	}
}

// The mark lives in the customer's record beside the status, which the
// transitions of queue care never touch, and is stored only on a change.
func TestRecordSessionKeepsTheMarkInTheCustomersRecord(t *testing.T) {
	m := openTestStore(t)
	ctx := context.Background()
	const o = "oSession"
	if err := m.RecordSession(ctx, o, true, sec(30)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Update(ctx, o, func(st *State) bool {
		_, _ = st.ApplyCreated(wang, sec(30), 3, within)
		st.ApplyClosed(wang, sec(90), 4)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.RecordSession(ctx, o, false, sec(20)); err != nil { // an older close, handled late
		t.Fatal(err)
	}
	mark, err := m.LastSession(ctx, o)
	if err != nil || mark != (SessionMark{State: SessionOpen, At: sec(30)}) {
		t.Fatalf("LastSession = %+v, %v", mark, err)
	}
	st, err := m.Get(ctx, o)
	if err != nil || st.Status != StatusClosed || st.LastSession != mark {
		t.Fatalf("Get = %+v, %v", st, err)
	}
	if mark, err := m.LastSession(ctx, "oNobody"); err != nil || mark != (SessionMark{}) {
		t.Errorf("unknown customer: %+v, %v", mark, err)
	}
	if err := m.RecordSession(ctx, "o.bad", true, sec(1)); err != nil {
		t.Errorf("malformed openid: %v", err)
	}
	if mark, err := m.LastSession(ctx, "o.bad"); err != nil || mark != (SessionMark{}) {
		t.Errorf("malformed openid: %+v, %v", mark, err)
	}
}
