package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// Store keeps posts and session facts and answers the feedback queries.
// Every method is safe for concurrent use.
type Store interface {
	// UpsertPosts writes a batch in one transaction. It is idempotent: a
	// post replaces the stored version only when its updated_at is later,
	// so an older or equal version never overwrites what is stored; of
	// several versions of one post in the batch the newest is kept.
	UpsertPosts(ctx context.Context, posts []events.FeedbackPost) error
	// RecordSessions stores session facts in one transaction; a fact
	// already stored (same openid, kf_account, kind and time) is ignored.
	RecordSessions(ctx context.Context, facts []SessionFact) error
	// FillPseudonyms sets the pseudonym of every stored fact that has
	// none, computed by pseudonym from the fact's openid, in transactions
	// of at most batch customers (MaxLimit when batch ≤ 0), and returns
	// how many customers it filled. A fact stored with a pseudonym keeps
	// it. Safe to run from several processes at once.
	FillPseudonyms(ctx context.Context, pseudonym func(openid string) string, batch int) (int, error)
	// ListPosts returns posts newest first by (created_at, id), each with
	// the session it is linked to.
	ListPosts(ctx context.Context, q PostQuery) (PostPage, error)
	// ListSessions returns closed sessions newest first by closed_at, each
	// with the posts linked to it.
	ListSessions(ctx context.Context, q SessionQuery) (SessionPage, error)
	// Ping checks the database can be reached.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// DefaultLinkWindow is how long after a session closes a post of the same
// customer is still taken as feedback on it.
const DefaultLinkWindow = 7 * 24 * time.Hour

// DefaultSchema is the PostgreSQL schema the tables live in.
const DefaultSchema = "kefu"

// Errors that decide behaviour: the HTTP API answers 400 for
// ErrInvalidCursor, and the consumer dead-letters a batch rejected with
// ErrInvalidPost or ErrInvalidSessionFact instead of retrying it.
var (
	ErrInvalidCursor      = errors.New("feedback store: invalid cursor")
	ErrInvalidPost        = errors.New("feedback store: invalid post")
	ErrInvalidSessionFact = errors.New("feedback store: invalid session fact")
	// ErrSchemaTooNew means the database was migrated by a newer kefu;
	// an older one refuses to write into a schema it does not know.
	ErrSchemaTooNew = errors.New("feedback store: database schema is newer than this kefu")
	// ErrUnsupportedDSN is returned by Open for a DSN that is neither
	// empty nor a PostgreSQL URL, so a typo never silently falls back to
	// a local SQLite file.
	ErrUnsupportedDSN = errors.New("feedback store: DSN must start with postgres:// or postgresql://")
)

// SessionFactKind says which 多客服 event a SessionFact comes from.
type SessionFactKind string

// Kinds of session facts.
const (
	SessionFactCreated SessionFactKind = "created"
	SessionFactClosed  SessionFactKind = "closed"
)

// SessionFact is one 多客服 session event reduced to what the store needs.
type SessionFact struct {
	Kind      SessionFactKind
	OpenID    string
	KfAccount string
	// At is when it happened (the callback's CreateTime).
	At time.Time
	// Pseudonym is the customer's id on Tucao (package feedbacklink);
	// empty when the key is not known, stored as missing and filled by
	// FillPseudonyms later.
	Pseudonym string
}

// SessionCreatedFact is the fact of a kf_create_session event.
func SessionCreatedFact(e events.SessionCreated) SessionFact {
	return SessionFact{Kind: SessionFactCreated, OpenID: e.OpenID, KfAccount: e.KfAccount, At: factTime(e.Meta, e.WeChatSource)}
}

// SessionClosedFact is the fact of a kf_close_session event.
func SessionClosedFact(e events.SessionClosed) SessionFact {
	return SessionFact{Kind: SessionFactClosed, OpenID: e.OpenID, KfAccount: e.KfAccount, At: factTime(e.Meta, e.WeChatSource)}
}

// factTime prefers the callback's CreateTime: WeChat repeats it unchanged
// in every retry, which makes a redelivered event the same fact.
func factTime(m events.Meta, w events.WeChatSource) time.Time {
	if w.CreateTime > 0 {
		return time.Unix(w.CreateTime, 0).UTC()
	}
	return m.OccurredAt
}

// PostQuery selects posts. Zero fields do not filter.
type PostQuery struct {
	// OpenID selects one customer's posts: those under the openid itself
	// (posted before pseudonyms), under the pseudonym recorded with any
	// of the customer's session facts, and under Pseudonym.
	OpenID string
	// Pseudonym is the customer's pseudonym, as the caller computes it;
	// used only with OpenID. It finds the posts of a customer whose
	// session facts carry no pseudonym yet.
	Pseudonym string
	// From (inclusive) and To (exclusive) bound created_at.
	From, To time.Time
	// Q is a case-insensitive substring of the content, matched literally
	// (% and _ are not wildcards).
	Q string
	// Limit is the page size: DefaultLimit when zero, at most MaxLimit.
	Limit int
	// Cursor is a previous page's NextCursor.
	Cursor string
}

// Post is a stored post and the session it is linked to, if any.
type Post struct {
	events.FeedbackPost
	Session *LinkedSession `json:"session,omitempty"`
}

// How a post was linked to its session (LinkedSession.LinkedBy).
const (
	// LinkedBySessionID: the post names the session (the feedback link's
	// customInfo, returned by Tucao as the post's extra).
	LinkedBySessionID = "session_id"
	// LinkedByOpenID: the post names none, and is linked to its customer's
	// latest session closed before it, within the link window.
	LinkedByOpenID = "openid"
)

// LinkedSession is the session a post is feedback on.
type LinkedSession struct {
	// SessionID is kefu's session id (events.SessionID); empty for a
	// session stored before kefu had session ids and not filled yet.
	SessionID string `json:"session_id,omitempty"`
	// LinkedBy says how the link was made: LinkedBySessionID or
	// LinkedByOpenID.
	LinkedBy  string `json:"linked_by"`
	KfAccount string `json:"kf_account"`
	// StartedAt is zero when the session's created fact is unknown.
	StartedAt time.Time `json:"started_at,omitzero"`
	ClosedAt  time.Time `json:"closed_at"`
}

// PostPage is one page of posts.
type PostPage struct {
	Items []Post `json:"items"`
	// NextCursor is empty on the last page.
	NextCursor string `json:"next_cursor"`
}

// SessionQuery selects closed sessions. Zero fields do not filter.
type SessionQuery struct {
	OpenID    string
	KfAccount string
	// From (inclusive) and To (exclusive) bound closed_at.
	From, To time.Time
	Limit    int
	Cursor   string
}

// Session is a closed session with the posts linked to it.
type Session struct {
	// SessionID is kefu's session id (events.SessionID).
	SessionID string `json:"session_id,omitempty"`
	OpenID    string `json:"openid"`
	// KfAccount is the agent who closed the session.
	KfAccount string `json:"kf_account"`
	// StartedAt is zero when the session's created fact is unknown.
	StartedAt time.Time `json:"started_at,omitzero"`
	ClosedAt  time.Time `json:"closed_at"`
	// DurationSeconds is set when StartedAt is known.
	DurationSeconds int64 `json:"duration_seconds,omitempty"`
	// Posts are the linked posts, newest first.
	Posts []events.FeedbackPost `json:"posts"`
}

// SessionPage is one page of sessions.
type SessionPage struct {
	Items      []Session `json:"items"`
	NextCursor string    `json:"next_cursor"`
}

// Option configures a store.
type Option func(*options)

type options struct {
	schema     string
	linkWindow time.Duration
	onMigrate  func(version int, name string)
	maxConns   int
	// migrateUpTo stops the migrations at a version (tests only; 0: all).
	migrateUpTo int
}

func buildOptions(opts []Option) (options, error) {
	o := options{schema: DefaultSchema, linkWindow: DefaultLinkWindow, maxConns: 8}
	for _, opt := range opts {
		opt(&o)
	}
	if o.linkWindow <= 0 {
		return o, fmt.Errorf("feedback store: link window %s is not positive", o.linkWindow)
	}
	if o.maxConns < 1 {
		return o, fmt.Errorf("feedback store: max connections %d is not positive", o.maxConns)
	}
	return o, nil
}

// WithSchema puts the PostgreSQL tables in the named schema (created if
// missing): lower-case letters, digits and underscores, starting with a
// letter or underscore. SQLite ignores it.
func WithSchema(name string) Option { return func(o *options) { o.schema = name } }

// WithLinkWindow sets how long after a session closes a post is still
// linked to it.
func WithLinkWindow(d time.Duration) Option { return func(o *options) { o.linkWindow = d } }

// OnMigrationApplied calls fn for each migration applied at open (none when
// the database is up to date), for instance to log it.
func OnMigrationApplied(fn func(version int, name string)) Option {
	return func(o *options) { o.onMigrate = fn }
}

// WithMaxConns bounds the connections used for reading (SQLite) or for
// everything (PostgreSQL); SQLite always writes through one connection.
func WithMaxConns(n int) Option { return func(o *options) { o.maxConns = n } }

// Open opens PostgreSQL when dsn is a postgres:// or postgresql:// URL, and
// SQLite at dataDir/feedback.db when dsn is empty.
func Open(ctx context.Context, dsn, dataDir string, opts ...Option) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn, opts...)
	case dsn != "":
		return nil, ErrUnsupportedDSN
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("open feedback store: create data dir: %w", err)
	}
	return OpenSQLite(filepath.Join(dataDir, "feedback.db"), opts...)
}
