package wechattest

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func fixed(d time.Duration) func(*rand.Rand) time.Duration {
	return func(*rand.Rand) time.Duration { return d }
}

func TestSimulatedAgents(t *testing.T) {
	t.Run("agents close each session after the service time and take the next customer", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		if err := f.srv.StartSimulation(SimConfig{Seed: 1, ServiceTime: fixed(10 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		f.transfer("o2", "")
		f.clock.Advance(10*time.Minute - time.Second)
		if got := servedBy(f.srv.Snapshot())["o1"]; got != "alice@shop" {
			t.Fatal("session closed before its service time")
		}
		f.clock.Advance(time.Second)
		f.clock.Advance(10 * time.Minute)
		want := []string{
			"kf_create_session o1 alice@shop",
			"kf_close_session o1 alice@shop",
			"kf_create_session o2 alice@shop",
			"kf_close_session o2 alice@shop",
		}
		if got := kfEvents(f); !slices.Equal(got, want) {
			t.Fatalf("events = %q\nwant %q", got, want)
		}
	})
	t.Run("with SwitchProb 1 the agent hands the session to another online agent", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 1)
		f.agent("bob@shop", 0)
		f.transfer("o1", "")
		if err := f.srv.StartSimulation(SimConfig{Seed: 1, ServiceTime: fixed(time.Minute), SwitchProb: 1}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
		if got := kfEvents(f); !slices.Equal(got, []string{"kf_create_session o1 alice@shop", "kf_switch_session o1 alice@shop bob@shop"}) {
			t.Fatalf("events = %q", got)
		}
	})
	t.Run("Speed compresses the service time", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		if err := f.srv.StartSimulation(SimConfig{Seed: 1, ServiceTime: fixed(10 * time.Minute), Speed: 60}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(10 * time.Second)
		if n := len(f.srv.Snapshot().Sessions); n != 0 {
			t.Fatalf("%d sessions after 10 minutes of simulated time", n)
		}
	})
	t.Run("a stopped simulation closes nothing more", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		if err := f.srv.StartSimulation(SimConfig{Seed: 1, ServiceTime: fixed(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := f.srv.StartSimulation(SimConfig{}); err == nil {
			t.Fatal("a second simulation started")
		}
		f.srv.StopSimulation()
		f.clock.Advance(time.Hour)
		if n := len(f.srv.Snapshot().Sessions); n != 1 {
			t.Fatalf("%d sessions, want the one left open", n)
		}
		if n := f.clock.Pending(); n != 0 {
			t.Fatalf("%d timers left after stop", n)
		}
	})
}

func TestSimulatedCustomers(t *testing.T) {
	t.Run("customers arrive, write and join the queue", func(t *testing.T) {
		f := newFake(t, nil)
		newReceiver(t, f, nil) // answers success: the simulation queues them itself
		if err := f.srv.StartSimulation(SimConfig{Seed: 7, Arrival: fixed(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(3 * time.Minute)
		st := f.srv.Snapshot()
		if len(st.Waiting) != 3 {
			t.Fatalf("%d waiting after three arrivals", len(st.Waiting))
		}
		for _, w := range st.Waiting {
			if len(w.OpenID) != 28 || !strings.HasPrefix(w.OpenID, "o") {
				t.Fatalf("openid %q does not look like one", w.OpenID)
			}
		}
		var texts int
		for _, d := range f.srv.Deliveries() {
			if d.MsgType == "text" && d.Status == DeliveryDelivered {
				texts++
			}
		}
		if texts != 3 {
			t.Fatalf("%d text callbacks delivered, want 3", texts)
		}
	})
	t.Run("the same seed brings the same customers", func(t *testing.T) {
		run := func() []string {
			f := newFake(t, nil)
			if err := f.srv.StartSimulation(SimConfig{Seed: 42, Arrival: fixed(time.Minute)}); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(2 * time.Minute)
			return waitingIDs(f.srv.Snapshot())
		}
		a, b := run(), run()
		if len(a) != 2 || !slices.Equal(a, b) {
			t.Fatalf("runs differ: %v vs %v", a, b)
		}
	})
	t.Run("impatient customers leave the queue", func(t *testing.T) {
		f := newFake(t, nil)
		f.transfer("o1", "")
		if err := f.srv.StartSimulation(SimConfig{Seed: 1, Patience: fixed(5 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(2 * time.Minute)
		f.transfer("o2", "")
		f.clock.Advance(3 * time.Minute)
		if got := waitingIDs(f.srv.Snapshot()); !slices.Equal(got, []string{"o2"}) {
			t.Fatalf("waiting = %v, want [o2]", got)
		}
		f.clock.Advance(2 * time.Minute)
		if got := waitingIDs(f.srv.Snapshot()); len(got) != 0 {
			t.Fatalf("waiting = %v, want nobody", got)
		}
	})
}

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(testStart)
	var order []string
	c.AfterFunc(2*time.Second, func() { order = append(order, "b") })
	c.AfterFunc(time.Second, func() {
		order = append(order, "a")
		c.AfterFunc(500*time.Millisecond, func() { order = append(order, "a2@"+c.Now().Sub(testStart).String()) })
	})
	stopped := c.AfterFunc(time.Second, func() { order = append(order, "stopped") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should report true once, then false")
	}
	c.AfterFunc(time.Hour, func() { order = append(order, "late") })
	c.Advance(3 * time.Second)
	if want := []string{"a", "a2@1.5s", "b"}; !slices.Equal(order, want) {
		t.Fatalf("order = %v, want %v", order, want)
	}
	if got := c.Now().Sub(testStart); got != 3*time.Second {
		t.Fatalf("Now advanced by %v", got)
	}
	if c.Pending() != 1 {
		t.Fatalf("Pending = %d, want the late timer", c.Pending())
	}
}
