package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// SchemaStatus is what PostgresStatus found: the migration version the
// database is at and the latest this kefu knows.
type SchemaStatus struct {
	Applied int // 0: no schema_migrations table in the store's schema
	Latest  int
}

// PostgresStatus connects to PostgreSQL, runs SELECT 1 and reads the
// migration version of the store's schema, changing nothing: unlike
// OpenPostgres it neither creates the schema nor applies migrations. It is
// what `kefu doctor` reports before a feedback role has started.
func PostgresStatus(ctx context.Context, dsn string, opts ...Option) (SchemaStatus, error) {
	var st SchemaStatus
	o, err := buildOptions(opts)
	if err != nil {
		return st, err
	}
	if !validSchema.MatchString(o.schema) {
		return st, fmt.Errorf("schema %q: want lower-case letters, digits and _", o.schema)
	}
	ms, err := loadMigrations("migrations/postgres")
	if err != nil {
		return st, err
	}
	st.Latest = len(ms)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return st, fmt.Errorf("parse DSN: %w", err)
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "kefu-doctor"
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	db.SetMaxOpenConns(1)
	var one int
	if err := db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return st, fmt.Errorf("connect: %w", err)
	}
	var table sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1)::text`, o.schema+".schema_migrations").Scan(&table); err != nil {
		return st, fmt.Errorf("look for %s.schema_migrations: %w", o.schema, err)
	}
	if !table.Valid {
		return st, nil
	}
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+o.schema+`.schema_migrations`).Scan(&st.Applied); err != nil {
		return st, fmt.Errorf("read %s.schema_migrations: %w", o.schema, err)
	}
	return st, nil
}
