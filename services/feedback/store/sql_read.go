package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

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
