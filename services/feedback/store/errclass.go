package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// IsDataError reports whether err is the database refusing the data it was
// given — a value it cannot hold, a broken constraint — which no retry can
// change. Everything else (a connection refused or reset, a timeout, a
// failover, a serialization failure, a full disk) may heal and is not a
// data error: the feedback consumers retry those until the database is
// back and send only data errors to the dead-letter subject.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 22 is "data exception" and 23 "integrity constraint
		// violation" in PostgreSQL's SQLSTATE codes.
		return len(pe.Code) == 5 && (pe.Code[:2] == "22" || pe.Code[:2] == "23")
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
			return true
		}
	}
	return false
}
