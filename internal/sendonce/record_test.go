package sendonce_test

import (
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/sendonce"
)

// The stored form is the one earlier versions wrote and read (the
// notifier's cause records and queue care's message records): a rolling
// upgrade must find their claims and final records.
func TestRecordFormatIsCompatible(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	got, err := sendonce.Encode(sendonce.Record{State: sendonce.StateSending, Cause: "wx-evt-1", Kind: "session_created", Owner: "p1", At: at})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"state":"sending","cause":"wx-evt-1","kind":"session_created","owner":"p1","at":"2026-03-02T10:00:00Z"}`; string(got) != want {
		t.Fatalf("claim encodes as %s, want %s", got, want)
	}
	stored := map[string]sendonce.Record{
		// queue care's records had no seq.
		`{"state":"failed","kind":"left_queue","cause":"kf-left-o-1-1772445600","owner":"queuecare-h1","at":"2026-03-02T10:00:00Z","errcode":45015,"errmsg":"out of time"}`: {
			State: sendonce.StateFailed, Kind: "left_queue", Cause: "kf-left-o-1-1772445600", Owner: "queuecare-h1", At: at, ErrCode: 45015, ErrMsg: "out of time"},
		`{"state":"sent","cause":"wx-evt-1","kind":"session_created","owner":"p1","at":"2026-03-02T10:00:00Z","seq":7}`: {
			State: sendonce.StateSent, Cause: "wx-evt-1", Kind: "session_created", Owner: "p1", At: at, Seq: 7},
	}
	for data, want := range stored {
		rec, err := sendonce.Decode([]byte(data))
		if err != nil || rec != want {
			t.Errorf("Decode(%s) = %+v, %v; want %+v", data, rec, err, want)
		}
		if !rec.Final() {
			t.Errorf("%s is not final", data)
		}
	}
	for _, bad := range []string{`{"cause":"x"}`, `not json`} {
		if _, err := sendonce.Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s) succeeded", bad)
		}
	}
}
