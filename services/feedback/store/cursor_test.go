package store

import (
	"encoding/base64"
	"testing"
	"time"
)

func TestCursorRoundTripAndRejection(t *testing.T) {
	k := cursorKey{at: mustTime(t, "2025-03-01T10:00:00.123456+08:00"), id: 153985339090723620}
	got, err := decodeCursor(postsCursor, encodeCursor(postsCursor, k))
	if err != nil || !got.at.Equal(k.at) || got.id != k.id {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, k)
	}
	for _, c := range []struct{ name, cursor string }{
		{"empty", ""},
		{"not base64url", "a+b/c"},
		{"another list's cursor", encodeCursor(sessionsCursor, k)},
		{"too few parts", "cDEuMQ"},
		{"time beyond year 9999", encodeRaw("p1.999999999999999999.1")},
		{"non-numeric id", encodeRaw("p1.1.x")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeCursor(postsCursor, c.cursor); err == nil {
				t.Errorf("cursor %q accepted", c.cursor)
			}
		})
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func encodeRaw(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
