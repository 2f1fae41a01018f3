-- kefu's session id (events.SessionID: openid, kf_account and close time of
-- the kf_close_session event) of a closed fact. kefu computes it when it
-- stores the fact; closed facts stored before this migration are filled
-- in by the store when it opens (SQL has no SHA-256 to do it here on
-- SQLite). NULL for created facts.
ALTER TABLE session_facts ADD COLUMN session_id TEXT;

-- From the session a post names to its closed fact.
CREATE INDEX session_facts_session_id ON session_facts (session_id);
-- The closed facts still to fill.
CREATE INDEX session_facts_session_id_missing ON session_facts (id) WHERE kind = 'closed' AND session_id IS NULL;

-- The session a post names in its extra: the customInfo the feedback link
-- passed to Tucao (package feedbacklink). NULL when it names none; such a
-- post is linked by its customer and time.
ALTER TABLE posts ADD COLUMN session_id TEXT;
-- The posts of the sessions a page of the sessions list shows.
CREATE INDEX posts_session_id ON posts (session_id);
