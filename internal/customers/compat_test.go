package customers

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The testdata/*-v1.json records were encoded by the read model as it was
// when it lived in services/queuecare (CustomerState). kefu_customers
// keeps them for days, so after an upgrade they must still read — every
// field — and a record written anew must be byte-identical, so that an
// older replica running beside a newer one during a rolling upgrade reads
// it too.
func TestRecordsOfTheFirstFormatStillRead(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		file  string
		check func(t *testing.T, st State)
	}{
		{"served-v1.json", func(t *testing.T, st State) {
			if st.Status != StatusServed || st.KfAccount != "wang@gh_test" || !st.Since.Equal(at.Add(30*time.Second)) ||
				st.FactSeq != 42 || !st.CheckedAt.Equal(at.Add(5*time.Minute)) {
				t.Errorf("%+v", st)
			}
			if c := st.Closing; c.Reason != ClosedByStale || c.Fence != 7 || !c.At.Equal(at.Add(31*time.Minute)) || c.Done || c.Failed {
				t.Errorf("closing %+v", c)
			}
			if !st.SuppressSessionNotice() || !st.SuppressWaitNotice() {
				t.Error("a session kefu is closing must silence the notifier")
			}
		}},
		{"left-v1.json", func(t *testing.T, st State) {
			if st.Status != StatusLeft || !st.QueuedAt.Equal(at) || !st.DeferredClose.Closed || st.DeferredClose.KfAccount != "li@gh_test" ||
				st.DeferredClose.Pending() {
				t.Errorf("%+v", st)
			}
		}},
		{"waiting-v1.json", func(t *testing.T, st State) {
			if st.Status != StatusWaiting || st.Position != 3 || st.WaitSeconds != 600 || st.WaitP90Seconds != 1200 || !st.Observed ||
				!st.EstimatedAt.Equal(at.Add(5*time.Second)) {
				t.Errorf("%+v", st)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			data = bytes.TrimSpace(data)
			var st State
			if err := json.Unmarshal(data, &st); err != nil {
				t.Fatal(err)
			}
			tt.check(t, st)
			again, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, data) {
				t.Errorf("re-encoded\n%s\nwant\n%s", again, data)
			}
		})
	}
}

// A record of the first format in the bucket is what Get returns, and the
// next transition builds on it rather than replacing it.
func TestStoreReadsRecordsOfTheFirstFormat(t *testing.T) {
	m := openTestStore(t)
	ctx := context.Background()
	data, err := os.ReadFile(filepath.Join("testdata", "left-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	const openid = "oLeft-customer_1"
	if _, err := m.kv.Put(ctx, openid, data); err != nil {
		t.Fatal(err)
	}
	st, err := m.Get(ctx, openid)
	if err != nil || st.Status != StatusLeft || !st.DeferredClose.Closed {
		t.Fatalf("Get = %+v, %v", st, err)
	}
	if !m.Left(ctx, openid) {
		t.Error("Left = false for a customer who left")
	}
	next, changed, err := m.Update(ctx, openid, func(st *State) bool { return st.ApplyMessage(sec(200), 10, true) })
	if err != nil || !changed || next.Status != StatusLeft || !next.QueuedAt.Equal(st.QueuedAt) || !next.LastMessageAt.Equal(sec(200)) {
		t.Fatalf("Update = %+v, %v, %v", next, changed, err)
	}
}
