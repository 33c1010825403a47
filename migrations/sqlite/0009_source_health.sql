-- What `nightdesk status` and /readyz read about the running daemon, kept in the store
-- so another process sees it (SQLite; the same SQL runs on PostgreSQL).

-- Each poller's health: written by every poll, good or failed. The error text is the
-- SourceError's Display, which never holds a secret.
CREATE TABLE source_health (
    source               TEXT PRIMARY KEY,  -- the source key, e.g. 'amazon/eu'
    last_attempt_at      BIGINT NOT NULL,   -- epoch ms
    last_good_at         BIGINT,            -- the last poll that stored its window
    last_error           TEXT,              -- the last failure, kept after a good poll
    last_error_at        BIGINT,
    consecutive_failures BIGINT NOT NULL    -- 0 after a good poll
);

-- Rules the engine of an instance skips until their file changes (quarantine lives in
-- the engine's memory; this is its copy for other processes).
CREATE TABLE rule_quarantines (
    instance    TEXT NOT NULL,   -- the instance's name, as in leases
    rule        TEXT NOT NULL,
    version     TEXT NOT NULL,   -- the rule file's version that failed
    error       TEXT NOT NULL,   -- the failure that quarantined it
    since       BIGINT NOT NULL,
    PRIMARY KEY (instance, rule)
);
