package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// sessionIDMigration is the migration that added session ids.
const sessionIDMigration = 3

// fillSessionIDs computes the session id of every closed fact stored
// without one (before migration 3), in batches. SQL cannot compute SHA-256
// on SQLite, so it is done here, at open; once filled, the partial index
// of the missing ones is empty and the check costs one look-up. Several
// processes filling at once write the same values.
func (s *sqlStore) fillSessionIDs(ctx context.Context) error {
	for {
		n, err := s.fillSessionIDBatch(ctx, MaxLimit)
		if err != nil {
			return fmt.Errorf("fill session ids: %w", err)
		}
		if n < MaxLimit {
			return nil
		}
	}
}

func (s *sqlStore) fillSessionIDBatch(ctx context.Context, batch int) (int, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rows, err := tx.QueryContext(ctx, `SELECT id, openid, kf_account, occurred_at FROM session_facts
		WHERE kind = 'closed' AND session_id IS NULL ORDER BY id LIMIT `+strconv.Itoa(batch))
	if err != nil {
		return 0, err
	}
	type fact struct {
		id         int64
		openid, kf string
		at         time.Time
	}
	var facts []fact
	for rows.Next() {
		var (
			f  fact
			at nullTime
		)
		if err := rows.Scan(&f.id, &f.openid, &f.kf, &at); err != nil {
			rows.Close()
			return 0, err
		}
		f.at = at.t
		facts = append(facts, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, f := range facts {
		args := s.params(2)
		q := `UPDATE session_facts SET session_id = ` + args.add(events.SessionID(f.openid, f.kf, f.at)) + ` WHERE id = ` + args.add(f.id)
		if _, err := tx.ExecContext(ctx, q, args.values...); err != nil {
			return 0, err
		}
	}
	return len(facts), tx.Commit()
}
