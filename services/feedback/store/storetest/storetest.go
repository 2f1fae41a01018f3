// Package storetest holds the contract every feedback store passes — one
// suite, run against SQLite and PostgreSQL alike — and the helpers that
// give a test an empty store of either kind.
//
// PostgreSQL tests run when KEFU_TEST_PG_DSN is set and skip otherwise;
// each test gets its own schema, dropped when it ends, so tests run in
// parallel against one database.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver used to drop test schemas

	"github.com/kefu-io/kefu/services/feedback/store"
)

// PostgresDSNEnv names the variable holding the PostgreSQL DSN of tests.
const PostgresDSNEnv = "KEFU_TEST_PG_DSN"

// Opener opens the one database a test owns. Each call opens it again, so
// a test can close a store and reopen the same data.
type Opener func(opts ...store.Option) (store.Store, error)

// Backend creates an empty database for a test or benchmark, removed
// when it ends, and returns how to open it.
type Backend func(tb testing.TB) Opener

// SQLite is a Backend of SQLite files in the test's temporary directory.
func SQLite(tb testing.TB) Opener {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "feedback.db")
	return func(opts ...store.Option) (store.Store, error) {
		return store.OpenSQLite(path, opts...)
	}
}

// Postgres is a Backend of PostgreSQL schemas named kefu_test_<random> in
// the database of KEFU_TEST_PG_DSN; it skips the test when that is unset.
func Postgres(tb testing.TB) Opener {
	tb.Helper()
	dsn, schema := newSchema(tb)
	return func(opts ...store.Option) (store.Store, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return store.OpenPostgres(ctx, dsn, append([]store.Option{store.WithSchema(schema)}, opts...)...)
	}
}

// newSchema names a fresh schema in the database of KEFU_TEST_PG_DSN,
// dropped when the test ends; it skips the test when that is unset.
func newSchema(tb testing.TB) (dsn, schema string) {
	tb.Helper()
	dsn = os.Getenv(PostgresDSNEnv)
	if dsn == "" {
		tb.Skipf("%s is not set: skipping the PostgreSQL store tests", PostgresDSNEnv)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("random schema name: %v", err)
	}
	schema = "kefu_test_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return dsn, schema
}

// Open opens an empty store of backend, closed when the test ends.
func Open(tb testing.TB, backend Backend, opts ...store.Option) store.Store {
	tb.Helper()
	return mustOpen(tb, backend(tb), opts...)
}

func mustOpen(tb testing.TB, open Opener, opts ...store.Option) store.Store {
	tb.Helper()
	s, err := open(opts...)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}
