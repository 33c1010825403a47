-- What each rule decided about a subject, for `nightdesk explain`. Event decisions are
-- all kept; sweep decisions only when a rule asked for something or failed (a sweep
-- asks every rule about every open order, every few minutes).
CREATE TABLE decisions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT  NOT NULL,
    subject       TEXT    NOT NULL,
    trigger_name  TEXT    NOT NULL,  -- the event's name, or 'sweep'
    event_id      BIGINT,
    rule          TEXT    NOT NULL,
    rule_version  TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,  -- asked | nothing | failed | quarantined
    detail        TEXT    NOT NULL   -- JSON: the actions and what became of each, or the error
);
CREATE INDEX decisions_subject ON decisions (subject, id);
