package store

import (
	"slices"
	"testing"
)

func TestMigrationsOfBothDialectsStayInStep(t *testing.T) {
	sqlite, err := loadMigrations(sqliteDialect.migrationsDir)
	if err != nil {
		t.Fatalf("sqlite migrations: %v", err)
	}
	postgres, err := loadMigrations(postgresDialect(DefaultSchema).migrationsDir)
	if err != nil {
		t.Fatalf("postgres migrations: %v", err)
	}
	names := func(ms []migration) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.name)
		}
		return out
	}
	if len(sqlite) == 0 || !slices.Equal(names(sqlite), names(postgres)) {
		t.Errorf("migrations differ: sqlite %v, postgres %v", names(sqlite), names(postgres))
	}
}
