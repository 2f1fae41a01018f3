package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/pkg/events"
)

// postVersion is a validated post ready to write.
type postVersion struct {
	id   int64
	post *events.FeedbackPost
}

// newestVersions validates a batch and keeps, for each id, the version
// with the latest updated_at (the first one on a tie, as the database
// keeps the stored one). The result is sorted by id so that concurrent
// batches lock rows in the same order and cannot deadlock.
func newestVersions(posts []events.FeedbackPost) ([]postVersion, error) {
	index := make(map[int64]int, len(posts))
	out := make([]postVersion, 0, len(posts))
	for i := range posts {
		p := &posts[i]
		id, err := strconv.ParseInt(p.ID, 10, 64)
		if err != nil || id <= 0 || strconv.FormatInt(id, 10) != p.ID {
			return nil, fmt.Errorf("%w: id %q is not a positive decimal int64", ErrInvalidPost, p.ID)
		}
		if p.CreatedAt.IsZero() {
			return nil, fmt.Errorf("%w: post %s has no created_at", ErrInvalidPost, p.ID)
		}
		if j, seen := index[id]; seen {
			if p.UpdatedAt.After(out[j].post.UpdatedAt) {
				out[j].post = p
			}
			continue
		}
		index[id] = len(out)
		out = append(out, postVersion{id: id, post: p})
	}
	slices.SortFunc(out, func(a, b postVersion) int { return cmp.Compare(a.id, b.id) })
	return out, nil
}

const upsertPostsPrefix = `INSERT INTO posts (id, product_id, openid, created_at, updated_at, content,
	content_fold, has_admin_reply, is_spam, is_hidden, is_todo, reply_count, body, stored_at, session_id) VALUES `

// The WHERE keeps a late older (or equal) version from replacing the row.
const upsertPostsSuffix = ` ON CONFLICT (id) DO UPDATE SET
	product_id = excluded.product_id, openid = excluded.openid,
	created_at = excluded.created_at, updated_at = excluded.updated_at,
	content = excluded.content, content_fold = excluded.content_fold,
	has_admin_reply = excluded.has_admin_reply, is_spam = excluded.is_spam,
	is_hidden = excluded.is_hidden, is_todo = excluded.is_todo,
	reply_count = excluded.reply_count, body = excluded.body, stored_at = excluded.stored_at,
	session_id = excluded.session_id
WHERE excluded.updated_at > posts.updated_at`

func (s *sqlStore) UpsertPosts(ctx context.Context, posts []events.FeedbackPost) error {
	versions, err := newestVersions(posts)
	if err != nil || len(versions) == 0 {
		return err
	}
	bodies := make([]string, len(versions))
	for i, v := range versions {
		b, err := json.Marshal(v.post)
		if err != nil {
			return fmt.Errorf("%w: post %s: %v", ErrInvalidPost, v.post.ID, err)
		}
		bodies[i] = string(b)
	}
	now := s.d.encodeTime(time.Now())
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("upsert posts: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for start := 0; start < len(versions); start += rowsPerStatement {
		end := min(start+rowsPerStatement, len(versions))
		var q strings.Builder
		q.WriteString(upsertPostsPrefix)
		args := s.params((end - start) * 15)
		for i := start; i < end; i++ {
			p := versions[i].post
			if i > start {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
				args.add(versions[i].id), args.add(textValue(p.ProductID)), args.add(textValue(p.OpenID)),
				args.add(s.d.encodeTime(p.CreatedAt)), args.add(s.d.encodeTime(p.UpdatedAt)),
				args.add(textValue(p.Content)), args.add(fold(p.Content)),
				args.add(p.HasAdminReply), args.add(p.IsSpam), args.add(p.IsHidden), args.add(p.IsTodo),
				args.add(int64(p.ReplyCount)), args.add(bodies[i]), args.add(now),
				args.add(nullText(feedbacklink.SessionIDOf(p.Extra))))
		}
		q.WriteString(upsertPostsSuffix)
		if _, err := tx.ExecContext(ctx, q.String(), args.values...); err != nil {
			return fmt.Errorf("upsert posts: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("upsert posts: commit: %w", err)
	}
	return nil
}

func (s *sqlStore) RecordSessions(ctx context.Context, facts []SessionFact) error {
	for _, f := range facts {
		switch {
		case f.Kind != SessionFactCreated && f.Kind != SessionFactClosed:
			return fmt.Errorf("%w: kind %q", ErrInvalidSessionFact, f.Kind)
		case f.OpenID == "":
			return fmt.Errorf("%w: no openid", ErrInvalidSessionFact)
		case f.At.IsZero():
			return fmt.Errorf("%w: no time", ErrInvalidSessionFact)
		}
	}
	if len(facts) == 0 {
		return nil
	}
	now := s.d.encodeTime(time.Now())
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record sessions: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for start := 0; start < len(facts); start += rowsPerStatement {
		end := min(start+rowsPerStatement, len(facts))
		var q strings.Builder
		q.WriteString(`INSERT INTO session_facts (kind, openid, kf_account, occurred_at, recorded_at, pseudonym, session_id) VALUES `)
		args := s.params((end - start) * 7)
		for i := start; i < end; i++ {
			f := facts[i]
			if i > start {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "(%s,%s,%s,%s,%s,%s,%s)", args.add(string(f.Kind)), args.add(textValue(f.OpenID)),
				args.add(textValue(f.KfAccount)), args.add(s.d.encodeTime(f.At)), args.add(now), args.add(pseudonymValue(f.Pseudonym)),
				args.add(nullText(factSessionID(f))))
		}
		q.WriteString(` ON CONFLICT (openid, kf_account, kind, occurred_at) DO NOTHING`)
		if _, err := tx.ExecContext(ctx, q.String(), args.values...); err != nil {
			return fmt.Errorf("record sessions: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record sessions: commit: %w", err)
	}
	return nil
}

// factSessionID is the session id of a closed fact (events.SessionID), ""
// for a created one. It is computed from the stored values, so the fill
// at open gives the same.
func factSessionID(f SessionFact) string {
	if f.Kind != SessionFactClosed {
		return ""
	}
	return events.SessionID(textValue(f.OpenID), textValue(f.KfAccount), f.At)
}

// nullText stores "" as NULL.
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// pseudonymValue stores a missing pseudonym as NULL, which FillPseudonyms
// looks for and which never equals a post's openid.
func pseudonymValue(p string) any {
	if p == "" {
		return nil
	}
	return textValue(p)
}

func (s *sqlStore) FillPseudonyms(ctx context.Context, pseudonym func(openid string) string, batch int) (int, error) {
	if batch <= 0 {
		batch = MaxLimit
	}
	filled := 0
	for {
		n, err := s.fillPseudonymBatch(ctx, pseudonym, batch)
		filled += n
		if err != nil || n == 0 {
			return filled, err
		}
	}
}

// fillPseudonymBatch fills the facts of up to batch customers in one
// transaction. Every fact of a customer it picks is filled, so each round
// makes progress and the loop ends.
func (s *sqlStore) fillPseudonymBatch(ctx context.Context, pseudonym func(string) string, batch int) (int, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("fill pseudonyms: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT openid FROM session_facts
		WHERE pseudonym IS NULL ORDER BY openid LIMIT `+strconv.Itoa(batch))
	if err != nil {
		return 0, fmt.Errorf("fill pseudonyms: %w", err)
	}
	var openids []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			rows.Close()
			return 0, fmt.Errorf("fill pseudonyms: %w", err)
		}
		openids = append(openids, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("fill pseudonyms: %w", err)
	}
	for _, o := range openids {
		args := s.params(2)
		q := `UPDATE session_facts SET pseudonym = ` + args.add(textValue(pseudonym(o))) +
			` WHERE openid = ` + args.add(o) + ` AND pseudonym IS NULL`
		if _, err := tx.ExecContext(ctx, q, args.values...); err != nil {
			return 0, fmt.Errorf("fill pseudonyms: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("fill pseudonyms: commit: %w", err)
	}
	return len(openids), nil
}
