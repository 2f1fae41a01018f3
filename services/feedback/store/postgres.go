package store

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// validSchema keeps the schema name a plain identifier, so it needs no
// quoting in search_path or DDL.
var validSchema = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func postgresDialect(schema string) *dialect {
	h := fnv.New64a()
	h.Write([]byte("kefu feedback migrations " + schema))
	lockKey := int64(h.Sum64())
	return &dialect{
		name:          "postgres",
		numbered:      true,
		migrationsDir: "migrations/postgres",
		migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER     PRIMARY KEY,
			name       TEXT        NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL
		)`,
		encodeTime: func(t time.Time) any { return t },
		minusMicros: func(expr string, micros int64) string {
			return fmt.Sprintf("(%s - interval '%d microseconds')", expr, micros)
		},
		// The transaction-scoped advisory lock serialises concurrent
		// starts, including the creation of the schema itself, and is
		// released by the commit.
		lock: func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
				return err
			}
			var exists bool
			if err := tx.QueryRowContext(ctx,
				`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return nil
			}
			_, err := tx.ExecContext(ctx, `CREATE SCHEMA `+schema)
			return err
		},
	}
}

// OpenPostgres connects to PostgreSQL (dsn is a postgres:// URL or a
// key=value string) and applies the migrations in the store's schema.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (Store, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if !validSchema.MatchString(o.schema) {
		return nil, fmt.Errorf("open postgres: schema %q: want lower-case letters, digits and _", o.schema)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	// Every connection resolves the unqualified table names in the
	// store's schema, so one set of SQL serves every schema.
	cfg.RuntimeParams["search_path"] = o.schema
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "kefu-feedback"
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(o.maxConns)
	db.SetMaxIdleConns(o.maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	d := postgresDialect(o.schema)
	if err := migrate(ctx, db, d, o.onMigrate, o.migrateUpTo); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	st := &sqlStore{d: d, write: db, read: db, linkWindow: o.linkWindow}
	if o.migrateUpTo == 0 || o.migrateUpTo >= sessionIDMigration {
		if err := st.fillSessionIDs(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("open postgres: %w", err)
		}
	}
	return st, nil
}
