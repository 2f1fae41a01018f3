package customers

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest/bustest"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	b, _ := bustest.Open(t)
	m, err := Ensure(context.Background(), b, Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Two kinds of writers update one customer at once — messages (moving
// LastMessageAt) and reconciliation (moving CheckedAt) — in random order.
// Had any write been based on a stale read, one of the two maxima would be
// lost; compare-and-set keeps both.
func TestConcurrentUpdatesNeverLoseATransition(t *testing.T) {
	m := openTestStore(t)
	ctx := context.Background()
	const n = 40
	order := rand.Perm(2 * n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for _, i := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := m.Update(ctx, "oCustomer", func(st *State) bool {
				if i < n {
					return st.ApplyMessage(sec(i+1), uint64(i+1), false)
				}
				at := sec(i - n + 1)
				if !at.After(st.CheckedAt) {
					return false
				}
				st.CheckedAt = at
				return true
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := m.Get(ctx, "oCustomer")
	if err != nil {
		t.Fatal(err)
	}
	if !st.LastMessageAt.Equal(sec(n)) || !st.CheckedAt.Equal(sec(n)) {
		t.Fatalf("last message %v, checked %v; want both %v", st.LastMessageAt, st.CheckedAt, sec(n))
	}
}

func TestGetAndServed(t *testing.T) {
	m := openTestStore(t)
	ctx := context.Background()
	if _, _, err := m.Update(ctx, "oServed", func(st *State) bool {
		_, _ = st.ApplyCreated(wang, sec(1), 1, within)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		openid     string
		wantErr    error
		wantServed bool
	}{
		{"a served customer is served", "oServed", nil, true},
		{"an unknown customer is not served", "oNobody", ErrUnknownCustomer, false},
		{"a malformed openid is refused", "o.bad", ErrInvalidOpenID, false},
		{"a KV wildcard is refused", "o*", ErrInvalidOpenID, false},
		{"an empty openid is refused", "", ErrInvalidOpenID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Get(ctx, tt.openid); !errors.Is(err, tt.wantErr) {
				t.Errorf("Get error %v, want %v", err, tt.wantErr)
			}
			served, err := m.Served(ctx, tt.openid)
			if served != tt.wantServed {
				t.Errorf("Served = %v", served)
			}
			if tt.wantErr == ErrInvalidOpenID && !errors.Is(err, ErrInvalidOpenID) {
				t.Errorf("Served error %v", err)
			}
		})
	}
}

// A record that cannot be read (written by hand, or by a broken version)
// is replaced instead of blocking the customer.
func TestUnreadableRecordIsReplaced(t *testing.T) {
	m := openTestStore(t)
	ctx := context.Background()
	if _, err := m.kv.Put(ctx, "oBroken", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	st, changed, err := m.Update(ctx, "oBroken", func(st *State) bool { return st.ApplyMessage(sec(5), 1, false) })
	if err != nil || !changed || !st.LastMessageAt.Equal(sec(5)) {
		t.Fatalf("update: %v %v %+v", err, changed, st)
	}
}
