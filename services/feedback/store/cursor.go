package store

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A cursor is the sort key of the last row of a page: (time, id). It is
// opaque to clients; the prefix keeps a sessions cursor from being accepted
// by the posts list and the version lets the format change later.
const (
	postsCursor    = "p1"
	sessionsCursor = "s1"
)

// Bounds of a cursor's time (years 1 to 9999), so a forged cursor cannot
// send a time the database rejects.
var (
	minCursorMicros = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxCursorMicros = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

type cursorKey struct {
	at time.Time
	id int64
}

func encodeCursor(kind string, k cursorKey) string {
	raw := kind + "." + strconv.FormatInt(k.at.UnixMicro(), 10) + "." + strconv.FormatInt(k.id, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(kind, s string) (cursorKey, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursorKey{}, fmt.Errorf("%w: not base64url", ErrInvalidCursor)
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 || parts[0] != kind {
		return cursorKey{}, fmt.Errorf("%w: not a cursor of this list", ErrInvalidCursor)
	}
	micros, err1 := strconv.ParseInt(parts[1], 10, 64)
	id, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || micros < minCursorMicros || micros > maxCursorMicros {
		return cursorKey{}, fmt.Errorf("%w: malformed key", ErrInvalidCursor)
	}
	return cursorKey{at: time.UnixMicro(micros).UTC(), id: id}, nil
}
