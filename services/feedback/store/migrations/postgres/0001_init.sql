-- One row per Tucao post: the newest version seen.
CREATE TABLE posts (
    id              BIGINT      PRIMARY KEY, -- Tucao's decimal id
    product_id      TEXT        NOT NULL,
    openid          TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,    -- the version: a later one replaces the row
    content         TEXT        NOT NULL,
    content_fold    TEXT        NOT NULL,    -- content lower-cased by kefu, the same way as on SQLite
    has_admin_reply BOOLEAN     NOT NULL,
    is_spam         BOOLEAN     NOT NULL,
    is_hidden       BOOLEAN     NOT NULL,
    is_todo         BOOLEAN     NOT NULL,
    reply_count     INTEGER     NOT NULL,
    -- The whole events.FeedbackPost. json, not jsonb: it keeps the text
    -- exactly and accepts \u0000, which jsonb rejects.
    body            JSON        NOT NULL,
    stored_at       TIMESTAMPTZ NOT NULL
);

-- A customer's posts newest first, and the link look-ups of the sessions list.
CREATE INDEX posts_openid_created ON posts (openid, created_at, id);
-- All posts newest first.
CREATE INDEX posts_created ON posts (created_at, id);

-- 多客服 session facts: kf_create_session and kf_close_session.
CREATE TABLE session_facts (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT        NOT NULL CHECK (kind IN ('created', 'closed')),
    openid      TEXT        NOT NULL,
    kf_account  TEXT        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);

-- A fact is stored once, however often its event is delivered.
CREATE UNIQUE INDEX session_facts_identity ON session_facts (openid, kf_account, kind, occurred_at);
-- Linking a post, finding a session's start, one customer's sessions.
CREATE INDEX session_facts_openid ON session_facts (openid, kind, occurred_at, id);
-- All closed sessions newest first.
CREATE INDEX session_facts_kind ON session_facts (kind, occurred_at, id);
-- One agent's sessions.
CREATE INDEX session_facts_kf_account ON session_facts (kf_account, kind, occurred_at, id);
