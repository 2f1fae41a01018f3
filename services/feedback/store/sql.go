package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// dialect holds what differs between SQLite and PostgreSQL. Everything
// else — the queries — is shared, so both databases answer with the same
// rules.
type dialect struct {
	name string
	// numbered placeholders ($1, $2, …) for PostgreSQL; SQLite gets
	// anonymous ones (?), bound in order: it looks a $N name up in a list,
	// which makes a 7,000-parameter batch quadratic to prepare.
	numbered        bool
	migrationsDir   string
	migrationsTable string
	// encodeTime turns a time into the value of a time column.
	encodeTime func(time.Time) any
	// minusMicros is the SQL of the time expression expr minus micros
	// microseconds. micros comes from configuration, never from a request.
	minusMicros func(expr string, micros int64) string
	// lock serialises migrations between processes.
	lock func(ctx context.Context, tx *sql.Tx) error
}

// sqlStore is the Store of both dialects.
type sqlStore struct {
	d *dialect
	// write takes every write; read every query. They are the same pool
	// on PostgreSQL, and one connection and a read-only pool on SQLite.
	write, read *sql.DB
	linkWindow  time.Duration
	beforeClose func()
}

// Rows per INSERT statement: 500 posts are 7,000 parameters, well within
// SQLite's 32,766 and PostgreSQL's 65,535.
const rowsPerStatement = 500

// params collects a statement's parameters; add returns the placeholder
// to write in the SQL text, which must be written in the order of the
// calls (SQLite's ? are bound in order of appearance).
type params struct {
	numbered bool
	values   []any
}

func (s *sqlStore) params(capacity int) *params {
	return &params{numbered: s.d.numbered, values: make([]any, 0, capacity)}
}

func (p *params) add(v any) string {
	p.values = append(p.values, v)
	if !p.numbered {
		return "?"
	}
	return "$" + strconv.Itoa(len(p.values))
}

// textValue makes s storable in a text column of either database:
// PostgreSQL rejects NUL and invalid UTF-8. The JSON body keeps the post
// exactly; only the searchable copies are cleaned.
func textValue(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// fold is the case folding of search: done in Go so that SQLite, whose
// lower() only knows ASCII, and PostgreSQL match the same way.
func fold(s string) string { return strings.ToLower(textValue(s)) }

// likeContains is a LIKE pattern matching s literally anywhere, for use
// with ESCAPE '\'.
func likeContains(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// nullTime scans a time column of either dialect: unix microseconds from
// SQLite, a time from PostgreSQL, or NULL.
type nullTime struct {
	t     time.Time
	valid bool
}

func (n *nullTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*n = nullTime{}
	case int64:
		*n = nullTime{t: time.UnixMicro(x).UTC(), valid: true}
	case time.Time:
		*n = nullTime{t: x.UTC(), valid: true}
	default:
		return fmt.Errorf("scan time: unexpected %T", v)
	}
	return nil
}

// sessionStart applies the pairing rule of the package documentation:
// the latest created fact before the close starts the session unless
// another close of the customer came between them.
func sessionStart(lastCreated, prevClosed nullTime) time.Time {
	if !lastCreated.valid || (prevClosed.valid && lastCreated.t.Before(prevClosed.t)) {
		return time.Time{}
	}
	return lastCreated.t
}

func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.d.name, err)
	}
	if s.read != s.write {
		if err := s.read.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s: %w", s.d.name, err)
		}
	}
	return nil
}

func (s *sqlStore) Close() error {
	if s.beforeClose != nil {
		s.beforeClose()
	}
	var errs []error
	if s.read != s.write {
		errs = append(errs, s.read.Close())
	}
	errs = append(errs, s.write.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s: %w", s.d.name, err)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
