package store

import (
	"context"
	"time"
)

// SeedGenerated gives the external benchmarks the bulk seeding path.
var SeedGenerated = seedGenerated

// MigrateUpTo opens a database as an older kefu left it: migrations stop
// after version v.
func MigrateUpTo(v int) Option { return func(o *options) { o.migrateUpTo = v } }

// RecordFactAsVersion1 stores a closed session fact the way kefu did
// before migration 2, without a pseudonym column.
func RecordFactAsVersion1(ctx context.Context, s Store, openid, kfAccount string, at time.Time) error {
	st := s.(*sqlStore)
	_, err := st.write.ExecContext(ctx, `INSERT INTO session_facts (kind, openid, kf_account, occurred_at, recorded_at)
		VALUES ('closed', $1, $2, $3, $4)`, openid, kfAccount, st.d.encodeTime(at), st.d.encodeTime(at))
	return err
}
