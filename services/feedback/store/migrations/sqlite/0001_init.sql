-- Times are unix microseconds: integers sort and compare exactly, whatever
-- zone the source wrote them in.

-- One row per Tucao post: the newest version seen.
CREATE TABLE posts (
    id              INTEGER PRIMARY KEY, -- Tucao's decimal id; the rowid, so rows are clustered by it
    product_id      TEXT    NOT NULL,
    openid          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,    -- the version: a later one replaces the row
    content         TEXT    NOT NULL,
    content_fold    TEXT    NOT NULL,    -- content lower-cased by kefu (SQLite's lower() is ASCII only)
    has_admin_reply INTEGER NOT NULL,
    is_spam         INTEGER NOT NULL,
    is_hidden       INTEGER NOT NULL,
    is_todo         INTEGER NOT NULL,
    reply_count     INTEGER NOT NULL,
    body            TEXT    NOT NULL,    -- the whole events.FeedbackPost as JSON
    stored_at       INTEGER NOT NULL
) STRICT;

-- A customer's posts newest first, and the link look-ups of the sessions list.
CREATE INDEX posts_openid_created ON posts (openid, created_at, id);
-- All posts newest first.
CREATE INDEX posts_created ON posts (created_at, id);

-- 多客服 session facts: kf_create_session and kf_close_session.
CREATE TABLE session_facts (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('created', 'closed')),
    openid      TEXT    NOT NULL,
    kf_account  TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
) STRICT;

-- A fact is stored once, however often its event is delivered.
CREATE UNIQUE INDEX session_facts_identity ON session_facts (openid, kf_account, kind, occurred_at);
-- Linking a post, finding a session's start, one customer's sessions.
CREATE INDEX session_facts_openid ON session_facts (openid, kind, occurred_at, id);
-- All closed sessions newest first.
CREATE INDEX session_facts_kind ON session_facts (kind, occurred_at, id);
-- One agent's sessions.
CREATE INDEX session_facts_kf_account ON session_facts (kf_account, kind, occurred_at, id);
