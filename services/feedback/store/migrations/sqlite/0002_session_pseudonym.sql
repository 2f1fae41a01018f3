-- The customer's pseudonym on Tucao (package feedbacklink): the feedback
-- link posts it as Tucao's openid, so posts made through the link carry it
-- instead of the WeChat openid. NULL when the fact was stored without the
-- key; the feedback service fills those in when it has the key (the key is
-- not the database's to know, so this migration cannot).
ALTER TABLE session_facts ADD COLUMN pseudonym TEXT;

-- From a post's pseudonym to the customer's openid when linking, and the
-- facts still to fill (pseudonym IS NULL).
CREATE INDEX session_facts_pseudonym ON session_facts (pseudonym, openid);
