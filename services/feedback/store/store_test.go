package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

func TestSQLiteStoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.SQLite)
}

// TestPostgresStoreContract runs when KEFU_TEST_PG_DSN is set, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
func TestPostgresStoreContract(t *testing.T) {
	if os.Getenv(storetest.PostgresDSNEnv) == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL store contract", storetest.PostgresDSNEnv)
	}
	t.Parallel()
	storetest.Run(t, storetest.Postgres)
}

func TestOpenChoosesTheDatabaseByDSN(t *testing.T) {
	for _, c := range []struct {
		name    string
		dsn     string
		wantErr error
	}{
		{"an empty DSN opens SQLite in the data directory", "", nil},
		{"another scheme is refused, not taken for SQLite", "mysql://kefu@db/kefu", store.ErrUnsupportedDSN},
		{"a file path is refused: the file lives in the data directory", "/var/lib/kefu/feedback.db", store.ErrUnsupportedDSN},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			s, err := store.Open(context.Background(), c.dsn, dir)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			defer s.Close()
			if _, err := os.Stat(filepath.Join(dir, "feedback.db")); err != nil {
				t.Errorf("no SQLite file in the data directory: %v", err)
			}
		})
	}
}

func TestOpenPostgresWithDSNPrefixes(t *testing.T) {
	dsn := os.Getenv(storetest.PostgresDSNEnv)
	if dsn == "" {
		t.Skipf("%s is not set", storetest.PostgresDSNEnv)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "kefu_test_open_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		db, err := sql.Open("pgx", dsn)
		if err == nil {
			db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
			db.Close()
		}
	})
	for _, prefix := range []string{"postgres://", "postgresql://"} {
		u := prefix + strings.TrimPrefix(strings.TrimPrefix(dsn, "postgresql://"), "postgres://")
		s, err := store.Open(context.Background(), u, t.TempDir(), store.WithSchema(schema))
		if err != nil {
			t.Fatalf("Open(%s…): %v", prefix, err)
		}
		if err := s.Ping(context.Background()); err != nil {
			t.Errorf("Ping: %v", err)
		}
		s.Close()
	}
}

func TestInvalidOptionsAreRefused(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		open func() (store.Store, error)
	}{
		{"a schema name that would need quoting", func() (store.Store, error) {
			return store.OpenPostgres(context.Background(), "postgres://nobody@127.0.0.1:1/x", store.WithSchema(`kefu"; DROP SCHEMA public; --`))
		}},
		{"an upper-case schema name", func() (store.Store, error) {
			return store.OpenPostgres(context.Background(), "postgres://nobody@127.0.0.1:1/x", store.WithSchema("Kefu"))
		}},
		{"a zero link window", func() (store.Store, error) {
			return store.OpenSQLite(filepath.Join(dir, "a.db"), store.WithLinkWindow(0))
		}},
		{"a SQLite path with a question mark", func() (store.Store, error) {
			return store.OpenSQLite(filepath.Join(dir, "a?.db"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := c.open()
			if err == nil {
				s.Close()
				t.Fatal("opened, want an error")
			}
		})
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feedback.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from_the_future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := store.OpenSQLite(path); !errors.Is(err, store.ErrSchemaTooNew) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open error = %v, want ErrSchemaTooNew", err)
	}
}
