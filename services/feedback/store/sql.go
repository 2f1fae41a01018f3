package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/pkg/events"
)

// dialect holds what differs between SQLite and PostgreSQL. Everything
// else — the queries — is shared, so both databases answer with the same
// rules.
type dialect struct {
	name string
	// numbered placeholders ($1, $2, …) for PostgreSQL; SQLite gets
	// anonymous ones (?), bound in order: it looks a $N name up in a list,
	// which makes a 7,000-parameter batch quadratic to prepare.
	numbered        bool
	migrationsDir   string
	migrationsTable string
	// encodeTime turns a time into the value of a time column.
	encodeTime func(time.Time) any
	// minusMicros is the SQL of the time expression expr minus micros
	// microseconds. micros comes from configuration, never from a request.
	minusMicros func(expr string, micros int64) string
	// lock serialises migrations between processes.
	lock func(ctx context.Context, tx *sql.Tx) error
}

// sqlStore is the Store of both dialects.
type sqlStore struct {
	d *dialect
	// write takes every write; read every query. They are the same pool
	// on PostgreSQL, and one connection and a read-only pool on SQLite.
	write, read *sql.DB
	linkWindow  time.Duration
	beforeClose func()
}

// Rows per INSERT statement: 500 posts are 7,000 parameters, well within
// SQLite's 32,766 and PostgreSQL's 65,535.
const rowsPerStatement = 500

// params collects a statement's parameters; add returns the placeholder
// to write in the SQL text, which must be written in the order of the
// calls (SQLite's ? are bound in order of appearance).
type params struct {
	numbered bool
	values   []any
}

func (s *sqlStore) params(capacity int) *params {
	return &params{numbered: s.d.numbered, values: make([]any, 0, capacity)}
}

func (p *params) add(v any) string {
	p.values = append(p.values, v)
	if !p.numbered {
		return "?"
	}
	return "$" + strconv.Itoa(len(p.values))
}

// textValue makes s storable in a text column of either database:
// PostgreSQL rejects NUL and invalid UTF-8. The JSON body keeps the post
// exactly; only the searchable copies are cleaned.
func textValue(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// fold is the case folding of search: done in Go so that SQLite, whose
// lower() only knows ASCII, and PostgreSQL match the same way.
func fold(s string) string { return strings.ToLower(textValue(s)) }

// likeContains is a LIKE pattern matching s literally anywhere, for use
// with ESCAPE '\'.
func likeContains(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// nullTime scans a time column of either dialect: unix microseconds from
// SQLite, a time from PostgreSQL, or NULL.
type nullTime struct {
	t     time.Time
	valid bool
}

func (n *nullTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*n = nullTime{}
	case int64:
		*n = nullTime{t: time.UnixMicro(x).UTC(), valid: true}
	case time.Time:
		*n = nullTime{t: x.UTC(), valid: true}
	default:
		return fmt.Errorf("scan time: unexpected %T", v)
	}
	return nil
}

// sessionStart applies the pairing rule of the package documentation:
// the latest created fact before the close starts the session unless
// another close of the customer came between them.
func sessionStart(lastCreated, prevClosed nullTime) time.Time {
	if !lastCreated.valid || (prevClosed.valid && lastCreated.t.Before(prevClosed.t)) {
		return time.Time{}
	}
	return lastCreated.t
}

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

// postCustomerSQL is the customer of post p: the openid whose facts
// record the post's openid as pseudonym, else the post's openid itself.
const postCustomerSQL = `COALESCE((SELECT f.openid FROM session_facts f WHERE f.pseudonym = p.openid LIMIT 1), p.openid)`

// linkedSessionSQL selects the id of the closed session the post p is
// linked to. First the session the post names (p.session_id, from the
// feedback link's customInfo), provided it is a session of the post's own
// customer — a name copied into someone else's post links nothing. Else
// the latest close of the same customer strictly before the post and
// within the link window. Mapping the customer first keeps the look-up one
// backward index scan on (openid, kind, occurred_at); "c.openid = p.openid
// OR c.pseudonym = p.openid" cost PostgreSQL four times as much.
//
// The CASE keeps the cost of posts that name no session (most of them) what
// it was before sessions could be named.
func (s *sqlStore) linkedSessionSQL() string {
	latest := `(SELECT c.id FROM session_facts c
		WHERE c.openid = ` + postCustomerSQL + `
		  AND c.kind = 'closed'
		  AND c.occurred_at < p.created_at
		  AND c.occurred_at >= ` + s.d.minusMicros("p.created_at", s.linkWindow.Microseconds()) + `
		ORDER BY c.occurred_at DESC, c.id DESC LIMIT 1)`
	named := `(SELECT x.id FROM session_facts x
		WHERE x.session_id = p.session_id AND x.kind = 'closed' AND x.openid = ` + postCustomerSQL + `
		ORDER BY x.id LIMIT 1)`
	return `(CASE WHEN p.session_id IS NULL THEN ` + latest + ` ELSE COALESCE(` + named + `, ` + latest + `) END)`
}

// sessionStartColumns selects, for the closed session c, the two times
// sessionStart needs.
const sessionStartColumns = `
	(SELECT MAX(s.occurred_at) FROM session_facts s
	  WHERE s.openid = c.openid AND s.kind = 'created' AND s.occurred_at < c.occurred_at),
	(SELECT MAX(x.occurred_at) FROM session_facts x
	  WHERE x.openid = c.openid AND x.kind = 'closed' AND x.occurred_at < c.occurred_at)`

// maxPseudonymsPerCustomer bounds the pseudonyms one openid filter looks
// under: one per key the customer's facts were stored with.
const maxPseudonymsPerCustomer = 16

// pseudonymsOf returns the pseudonyms recorded with the facts of the
// customers openids. They are read first and passed on as a list, which
// both planners answer from the posts' (openid, created_at, id) index; a
// subquery in the filter made PostgreSQL scan the posts.
func (s *sqlStore) pseudonymsOf(ctx context.Context, openids []string) ([]string, error) {
	args := s.params(len(openids))
	in := make([]string, len(openids))
	for i, o := range openids {
		in[i] = args.add(o)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT DISTINCT pseudonym FROM session_facts
		WHERE openid IN (`+strings.Join(in, ", ")+`) AND pseudonym IS NOT NULL
		LIMIT `+strconv.Itoa(maxPseudonymsPerCustomer*len(openids)), args.values...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (s *sqlStore) ListPosts(ctx context.Context, q PostQuery) (PostPage, error) {
	limit := clampLimit(q.Limit)
	var cursor *cursorKey
	if q.Cursor != "" {
		k, err := decodeCursor(postsCursor, q.Cursor)
		if err != nil {
			return PostPage{}, err
		}
		cursor = &k
	}
	// filter writes the conditions other than the openid; it is called
	// once per branch below, as SQLite binds its ? in order of appearance.
	filter := func(args *params) string {
		where := []string{"1 = 1"}
		if !q.From.IsZero() {
			where = append(where, "created_at >= "+args.add(s.d.encodeTime(q.From)))
		}
		if !q.To.IsZero() {
			where = append(where, "created_at < "+args.add(s.d.encodeTime(q.To)))
		}
		if q.Q != "" {
			where = append(where, "content_fold LIKE "+args.add(likeContains(fold(q.Q)))+` ESCAPE '\'`)
		}
		if cursor != nil {
			where = append(where, "(created_at, id) < ("+args.add(s.d.encodeTime(cursor.at))+", "+args.add(cursor.id)+")")
		}
		return strings.Join(where, " AND ")
	}
	const order = ` ORDER BY created_at DESC, id DESC LIMIT `
	pageLimit := strconv.Itoa(limit + 1)
	args := s.params(8)
	var selected string
	if q.OpenID == "" {
		selected = `SELECT id, openid, created_at, body, session_id FROM posts WHERE ` + filter(args) + order + pageLimit
	} else {
		// The customer's posts: under the openid (made before pseudonyms),
		// the given pseudonym, or one recorded with their facts. One
		// branch per id, each a backward scan of the (openid, created_at,
		// id) index that stops at the page's end, merged after: with
		// "openid IN (…)" both databases read all the customer's posts
		// before the cursor and sorted them.
		recorded, err := s.pseudonymsOf(ctx, []string{textValue(q.OpenID)})
		if err != nil {
			return PostPage{}, fmt.Errorf("list posts: pseudonyms: %w", err)
		}
		customer := []string{textValue(q.OpenID)}
		for _, id := range append([]string{textValue(q.Pseudonym)}, recorded...) {
			if id != "" && !slices.Contains(customer, id) {
				customer = append(customer, id)
			}
		}
		branches := make([]string, len(customer))
		for i, id := range customer {
			branches[i] = `SELECT id, openid, created_at, body, session_id FROM (SELECT id, openid, created_at, body, session_id FROM posts
				WHERE openid = ` + args.add(id) + ` AND ` + filter(args) + order + pageLimit + `) b` + strconv.Itoa(i)
		}
		selected = `SELECT id, openid, created_at, body, session_id FROM (` + strings.Join(branches, " UNION ALL ") + `) u` + order + pageLimit
	}
	// The page is cut first and linked after, so the link look-ups run
	// for the returned rows only. The second LIMIT, a no-op, keeps
	// PostgreSQL from merging the linking level into the join, where it
	// took the session_id expression for costly and joined session_facts
	// by scanning all of it.
	query := `SELECT p.id, p.created_at, p.body, c.kf_account, c.occurred_at, c.session_id, p.named_session,` + sessionStartColumns + `
		FROM (
			SELECT p.id, p.created_at, p.body, p.session_id AS named_session, ` + s.linkedSessionSQL() + ` AS linked_fact
			FROM (` + selected + `) p
			LIMIT ` + pageLimit + `
		) p
		LEFT JOIN session_facts c ON c.id = p.linked_fact
		ORDER BY p.created_at DESC, p.id DESC`
	rows, err := s.read.QueryContext(ctx, query, args.values...)
	if err != nil {
		return PostPage{}, fmt.Errorf("list posts: %w", err)
	}
	defer rows.Close()
	page := PostPage{Items: []Post{}}
	var last cursorKey
	for rows.Next() {
		if len(page.Items) == limit {
			page.NextCursor = encodeCursor(postsCursor, last)
			break
		}
		var (
			id                                 int64
			created, closed, started, previous nullTime
			body                               []byte
			kfAccount, sessionID, named        sql.NullString
		)
		if err := rows.Scan(&id, &created, &body, &kfAccount, &closed, &sessionID, &named, &started, &previous); err != nil {
			return PostPage{}, fmt.Errorf("list posts: %w", err)
		}
		var p Post
		if err := json.Unmarshal(body, &p.FeedbackPost); err != nil {
			return PostPage{}, fmt.Errorf("list posts: decode post %d: %w", id, err)
		}
		if closed.valid {
			p.Session = &LinkedSession{SessionID: sessionID.String, KfAccount: kfAccount.String,
				StartedAt: sessionStart(started, previous), ClosedAt: closed.t, LinkedBy: LinkedByOpenID}
			if named.Valid && named.String == sessionID.String {
				p.Session.LinkedBy = LinkedBySessionID
			}
		}
		page.Items = append(page.Items, p)
		last = cursorKey{at: created.t, id: id}
	}
	if err := rows.Err(); err != nil {
		return PostPage{}, fmt.Errorf("list posts: %w", err)
	}
	return page, nil
}

func (s *sqlStore) ListSessions(ctx context.Context, q SessionQuery) (SessionPage, error) {
	limit := clampLimit(q.Limit)
	args := s.params(8)
	where := []string{"kind = 'closed'"}
	if q.OpenID != "" {
		where = append(where, "openid = "+args.add(textValue(q.OpenID)))
	}
	if q.KfAccount != "" {
		where = append(where, "kf_account = "+args.add(textValue(q.KfAccount)))
	}
	if !q.From.IsZero() {
		where = append(where, "occurred_at >= "+args.add(s.d.encodeTime(q.From)))
	}
	if !q.To.IsZero() {
		where = append(where, "occurred_at < "+args.add(s.d.encodeTime(q.To)))
	}
	if q.Cursor != "" {
		k, err := decodeCursor(sessionsCursor, q.Cursor)
		if err != nil {
			return SessionPage{}, err
		}
		where = append(where, "(occurred_at, id) < ("+args.add(s.d.encodeTime(k.at))+", "+args.add(k.id)+")")
	}
	query := `SELECT c.id, c.openid, c.kf_account, c.occurred_at, c.session_id,` + sessionStartColumns + `
		FROM (
			SELECT id, openid, kf_account, occurred_at, session_id FROM session_facts
			WHERE ` + strings.Join(where, " AND ") + `
			ORDER BY occurred_at DESC, id DESC
			LIMIT ` + strconv.Itoa(limit+1) + `
		) c
		ORDER BY c.occurred_at DESC, c.id DESC`
	rows, err := s.read.QueryContext(ctx, query, args.values...)
	if err != nil {
		return SessionPage{}, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	page := SessionPage{Items: []Session{}}
	var ids []int64
	for rows.Next() {
		if len(page.Items) == limit {
			last := len(page.Items) - 1
			page.NextCursor = encodeCursor(sessionsCursor, cursorKey{at: page.Items[last].ClosedAt, id: ids[last]})
			break
		}
		var (
			id                        int64
			sess                      Session
			closed, started, previous nullTime
			sessionID                 sql.NullString
		)
		if err := rows.Scan(&id, &sess.OpenID, &sess.KfAccount, &closed, &sessionID, &started, &previous); err != nil {
			return SessionPage{}, fmt.Errorf("list sessions: %w", err)
		}
		sess.ClosedAt = closed.t
		sess.SessionID = sessionID.String
		sess.StartedAt = sessionStart(started, previous)
		if !sess.StartedAt.IsZero() {
			sess.DurationSeconds = int64(sess.ClosedAt.Sub(sess.StartedAt) / time.Second)
		}
		sess.Posts = []events.FeedbackPost{}
		page.Items = append(page.Items, sess)
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return SessionPage{}, fmt.Errorf("list sessions: %w", err)
	}
	rows.Close()
	if err := s.attachLinkedPosts(ctx, page.Items, ids); err != nil {
		return SessionPage{}, err
	}
	return page, nil
}

// attachLinkedPosts fills each session's Posts. It reads the posts of the
// page's customers (under their openids or their recorded pseudonyms) in
// the time the sessions can link to, and the posts that name one of the
// page's sessions, computes each one's link with the same SQL as
// ListPosts, and keeps those linked to a session of the page.
func (s *sqlStore) attachLinkedPosts(ctx context.Context, sessions []Session, ids []int64) error {
	if len(sessions) == 0 {
		return nil
	}
	bySession := make(map[int64]*Session, len(sessions))
	openids := make(map[string]bool)
	earliest, latest := sessions[0].ClosedAt, sessions[0].ClosedAt
	for i := range sessions {
		bySession[ids[i]] = &sessions[i]
		openids[sessions[i].OpenID] = true
		earliest = minTime(earliest, sessions[i].ClosedAt)
		latest = maxTime(latest, sessions[i].ClosedAt)
	}
	customers := slices.Sorted(maps.Keys(openids))
	pseudonyms, err := s.pseudonymsOf(ctx, customers)
	if err != nil {
		return fmt.Errorf("list sessions: pseudonyms: %w", err)
	}
	args := s.params(len(customers) + len(pseudonyms) + 2 + len(sessions))
	in := make([]string, 0, len(customers)+len(pseudonyms))
	for _, o := range append(customers, pseudonyms...) {
		in = append(in, args.add(o))
	}
	window := `p.openid IN (` + strings.Join(in, ", ") + `)
			  AND p.created_at > ` + args.add(s.d.encodeTime(earliest)) + `
			  AND p.created_at <= ` + args.add(s.d.encodeTime(latest.Add(s.linkWindow)))
	var named []string
	for i := range sessions {
		if sessions[i].SessionID != "" {
			named = append(named, args.add(sessions[i].SessionID))
		}
	}
	if len(named) > 0 {
		window = `(` + window + `) OR p.session_id IN (` + strings.Join(named, ", ") + `)`
	}
	query := `SELECT l.linked_fact, l.id, l.body FROM (
			SELECT p.id, p.created_at, p.body, ` + s.linkedSessionSQL() + ` AS linked_fact
			FROM posts p
			WHERE ` + window + `
		) l
		WHERE l.linked_fact IS NOT NULL
		ORDER BY l.created_at DESC, l.id DESC`
	rows, err := s.read.QueryContext(ctx, query, args.values...)
	if err != nil {
		return fmt.Errorf("list sessions: linked posts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			sessionID, id int64
			body          []byte
		)
		if err := rows.Scan(&sessionID, &id, &body); err != nil {
			return fmt.Errorf("list sessions: linked posts: %w", err)
		}
		sess, ok := bySession[sessionID]
		if !ok {
			continue // linked to a session of another page
		}
		var p events.FeedbackPost
		if err := json.Unmarshal(body, &p); err != nil {
			return fmt.Errorf("list sessions: decode post %d: %w", id, err)
		}
		sess.Posts = append(sess.Posts, p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list sessions: linked posts: %w", err)
	}
	return nil
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

func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.d.name, err)
	}
	if s.read != s.write {
		if err := s.read.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s: %w", s.d.name, err)
		}
	}
	return nil
}

func (s *sqlStore) Close() error {
	if s.beforeClose != nil {
		s.beforeClose()
	}
	var errs []error
	if s.read != s.write {
		errs = append(errs, s.read.Close())
	}
	errs = append(errs, s.write.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s: %w", s.d.name, err)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
