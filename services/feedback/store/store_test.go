package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
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

// A database that an older kefu filled (schema version 1, no pseudonyms)
// gains the column at open; its facts link posts by openid as before, and
// by pseudonym once FillPseudonyms has run with the key.
func TestUpgradeFromVersion1FillsPseudonymsLater(t *testing.T) {
	for _, b := range []struct {
		name    string
		backend storetest.Backend
	}{{"sqlite", storetest.SQLite}, {"postgres", storetest.Postgres}} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			open := b.backend(t)
			v1, err := open(store.MigrateUpTo(1))
			if err != nil {
				t.Fatalf("open at version 1: %v", err)
			}
			at := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
			if err := store.RecordFactAsVersion1(ctx, v1, "o-old", "kf1", at); err != nil {
				t.Fatalf("record as version 1: %v", err)
			}
			v1.Close()

			var applied []int
			s, err := open(store.OnMigrationApplied(func(v int, _ string) { applied = append(applied, v) }))
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			if !slices.Equal(applied, []int{2, 3}) {
				t.Errorf("migrations applied on upgrade %v, want [2 3]", applied)
			}
			post := func(id, openid string) events.FeedbackPost {
				created := at.Add(time.Hour)
				return events.FeedbackPost{ID: id, OpenID: openid, Content: "x", CreatedAt: created, UpdatedAt: created}
			}
			pseudonym := func(o string) string { return "p-" + o }
			if err := s.UpsertPosts(ctx, []events.FeedbackPost{post("1", "o-old"), post("2", pseudonym("o-old"))}); err != nil {
				t.Fatal(err)
			}
			linked := func() []string {
				page, err := s.ListSessions(ctx, store.SessionQuery{})
				if err != nil || len(page.Items) != 1 {
					t.Fatalf("sessions %+v, %v; want the one stored by version 1", page, err)
				}
				// Opening filled in the session id the old version had no column for.
				if want := events.SessionID("o-old", "kf1", at); page.Items[0].SessionID != want {
					t.Errorf("session id %q, want %q", page.Items[0].SessionID, want)
				}
				var ids []string
				for _, p := range page.Items[0].Posts {
					ids = append(ids, p.ID)
				}
				return ids
			}
			if got := linked(); !slices.Equal(got, []string{"1"}) {
				t.Errorf("before the fill the session links %v, want [1] (by openid)", got)
			}
			if n, err := s.FillPseudonyms(ctx, pseudonym, 0); n != 1 || err != nil {
				t.Fatalf("FillPseudonyms = %d, %v; want 1", n, err)
			}
			if got := linked(); !slices.Equal(got, []string{"2", "1"}) {
				t.Errorf("after the fill the session links %v, want [2 1]", got)
			}
		})
	}
}
