package tucao

import (
	"context"
	"testing"
	"time"
)

var epoch = time.Date(2018, 10, 18, 17, 0, 0, 0, time.FixedZone("CST", 8*3600))

func TestFakeClockManualFiresOnlyWhenDue(t *testing.T) {
	c := NewFakeClock(epoch)
	ch := c.After(10 * time.Second)
	c.Advance(9 * time.Second)
	select {
	case <-ch:
		t.Fatal("timer fired before its deadline")
	default:
	}
	if c.Waiters() != 1 {
		t.Fatalf("Waiters() = %d, want 1", c.Waiters())
	}
	c.Advance(time.Second)
	select {
	case got := <-ch:
		if want := epoch.Add(10 * time.Second); !got.Equal(want) {
			t.Errorf("fired with %v, want %v", got, want)
		}
	default:
		t.Fatal("timer did not fire at its deadline")
	}
	if c.Waiters() != 0 {
		t.Errorf("Waiters() = %d after firing, want 0", c.Waiters())
	}
}

func TestFakeClockNonPositiveDurationFiresAtOnce(t *testing.T) {
	c := NewFakeClock(epoch)
	select {
	case <-c.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
	if !c.Now().Equal(epoch) {
		t.Errorf("After(0) moved the clock to %v", c.Now())
	}
}

func TestFakeClockAutoAdvanceJumpsToDeadline(t *testing.T) {
	c := NewFakeClock(epoch)
	c.SetAutoAdvance(true)
	select {
	case <-c.After(time.Minute):
	default:
		t.Fatal("After in auto mode did not fire at once")
	}
	if want := epoch.Add(time.Minute); !c.Now().Equal(want) {
		t.Errorf("Now() = %v, want %v", c.Now(), want)
	}
}

func TestFakeClockSwitchingToAutoReleasesWaiters(t *testing.T) {
	c := NewFakeClock(epoch)
	a, b := c.After(time.Second), c.After(time.Hour)
	c.SetAutoAdvance(true)
	<-a
	<-b
	if want := epoch.Add(time.Hour); !c.Now().Equal(want) {
		t.Errorf("Now() = %v, want %v", c.Now(), want)
	}
}

func TestFakeClockWaitForWaiters(t *testing.T) {
	c := NewFakeClock(epoch)
	done := make(chan time.Time)
	go func() { done <- <-c.After(time.Second) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitForWaiters(ctx, 1); err != nil {
		t.Fatalf("WaitForWaiters: %v", err)
	}
	c.Advance(time.Second)
	if got := <-done; !got.Equal(epoch.Add(time.Second)) {
		t.Errorf("fired with %v", got)
	}
}
