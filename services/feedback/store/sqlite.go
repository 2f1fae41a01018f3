package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDialect stores times as unix microseconds: SQLite has no time
// type, and integers compare and sort exactly.
var sqliteDialect = &dialect{
	name:          "sqlite",
	migrationsDir: "migrations/sqlite",
	migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`,
	encodeTime: func(t time.Time) any { return t.UnixMicro() },
	minusMicros: func(expr string, micros int64) string {
		return fmt.Sprintf("(%s - %d)", expr, micros)
	},
	// The writer's transactions begin IMMEDIATE, which takes SQLite's
	// write lock: a second process waits (busy_timeout) until the first
	// one's migrations are committed.
	lock: func(context.Context, *sql.Tx) error { return nil },
}

// sqliteBusyTimeout is how long a connection waits for another process's
// write lock before failing with SQLITE_BUSY.
const sqliteBusyTimeout = 10 * time.Second

// OpenSQLite opens (creating if needed) the SQLite database at path and
// applies its migrations.
func OpenSQLite(path string, opts ...Option) (Store, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	// The driver reads its settings after the first '?', so a path with
	// one would be cut.
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("open sqlite %q: the path must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite: create directory: %w", err)
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", sqliteBusyTimeout.Milliseconds())
	// synchronous stays FULL (the default): the consumer acknowledges an
	// event once its transaction commits, so a commit must survive a
	// power cut, and batching makes the fsync per batch affordable.
	write, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)

	ctx, cancel := context.WithTimeout(context.Background(), sqliteBusyTimeout+5*time.Second)
	defer cancel()
	// The first connection creates the file and switches it to WAL before
	// the read pool opens it.
	if err := retryBusy(ctx, func() error { return write.PingContext(ctx) }); err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	err = retryBusy(ctx, func() error { return migrate(ctx, write, sqliteDialect, o.onMigrate, o.migrateUpTo) })
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	read, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	read.SetMaxOpenConns(o.maxConns)
	read.SetMaxIdleConns(o.maxConns)
	if err := retryBusy(ctx, func() error { return read.PingContext(ctx) }); err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	st := &sqlStore{d: sqliteDialect, write: write, read: read, linkWindow: o.linkWindow,
		beforeClose: func() {
			// Lets SQLite refresh the planner statistics it found
			// missing or stale during this connection's life.
			_, _ = write.Exec(`PRAGMA optimize`)
		},
	}
	if o.migrateUpTo == 0 || o.migrateUpTo >= sessionIDMigration {
		if err := retryBusy(ctx, func() error { return st.fillSessionIDs(ctx) }); err != nil {
			write.Close()
			read.Close()
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
	}
	return st, nil
}

// retryBusy runs fn until it does not fail with SQLITE_BUSY. busy_timeout
// covers ordinary lock waits, but SQLite answers BUSY at once, without
// waiting, while another connection switches a new file to WAL or
// recovers its WAL index — which happens when two processes open a new
// database together.
func retryBusy(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10*time.Millisecond + time.Duration(rand.Int64N(int64(40*time.Millisecond)))):
		}
	}
}
