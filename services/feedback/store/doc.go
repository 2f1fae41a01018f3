// Package store keeps the feedback service's data — Tucao posts and the
// 多客服 session facts — in SQLite or PostgreSQL, and answers the queries of
// the feedback HTTP API.
//
// # Posts
//
// A post is stored whole, as the JSON of its events.FeedbackPost, so no field
// is lost, beside the columns that are filtered and sorted on (id, openid,
// created_at, updated_at, a case-folded copy of content) and a few flags for
// operators' own SQL. One row per post holds the newest version seen: a
// version replaces the stored one only when its updated_at is later, so
// redelivered and out-of-order events never move a post back in time, and
// a version with the same updated_at is the same version and changes nothing.
//
// # Sessions
//
// A session is known from two facts, created (kf_create_session) and closed
// (kf_close_session), each stored once by (openid, kf_account, kind, time).
// The sessions list shows closed sessions. A closed session's start is the
// latest created fact of the same openid strictly before the close, provided
// no other close of that openid lies between the two; otherwise the start is
// unknown (the created event was lost or predates the data). The openid alone
// pairs the facts because a customer has at most one session at a time and a
// transfer changes the agent between created and closed. A created fact in
// the same second as the previous close belongs to the next session.
//
// # Linking a post to a session
//
// A post written through the feedback link names its session: the link's
// customInfo (package feedbacklink), which Tucao returns as the post's
// extra, carries kefu's session id (events.SessionID, computed from the
// kf_close_session event). Every closed fact is stored with its session id
// (facts stored before session ids are filled in at open), and the post's
// named id is kept in a column at upsert. Such a post is linked to that
// session — whatever its age and whatever sessions came after — provided
// it is a session of the post's own customer (below), so a copied extra
// links nothing (LinkedBySessionID). Only a post that names no session, or
// names one of another customer or one not stored, falls back to the rule
// that follows (LinkedByOpenID).
//
// A post is linked to the most recent closed session of the same customer
// whose close is strictly before the post's created_at and no more than the
// link window (default 7 days, WithLinkWindow) before it. A post is the
// customer's when its openid is the customer's openid (posts made before
// kefu posted pseudonyms) or a pseudonym recorded with any of the customer's
// session facts: the feedback link logs customers in to Tucao under a keyed
// HMAC of their openid (package feedbacklink), which the feedback service
// stores with each fact. The store never sees the key: facts stored without
// a pseudonym keep it missing until FillPseudonyms computes it, and a fact
// keeps the pseudonym it was stored with, so posts made under an older key
// still find their customer.
//
// The link is computed when reading, from whatever facts are stored at that
// moment: posts and session facts arrive on different streams in any order,
// and a read-time link is right whichever came first, with nothing to rewrite
// when a late fact arrives. It costs two index lookups per returned post:
// from the post's openid to the customer, and to their latest close.
//
// # Pagination
//
// Lists are newest first, ordered by (time, id), and paged with an opaque
// keyset cursor holding the last row's key: a page never repeats or skips a
// row that existed when the walk began, whatever is written in between.
//
// # Databases
//
// OpenSQLite uses the pure-Go modernc.org/sqlite driver in WAL mode with one
// writer connection (SQLite allows one writer; a single connection turns
// lock contention into queueing) and a separate read-only pool, so queries
// run while a batch is written. OpenPostgres uses pgx through database/sql
// with all tables in one schema (WithSchema, default "kefu"), which lets tests
// and several deployments share a database. Both apply the embedded,
// versioned migrations of their dialect at open, in one transaction, under a
// lock, so two processes starting together apply each migration once.
package store
