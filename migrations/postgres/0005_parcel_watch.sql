-- Parcels nightdesk asks carriers about (PostgreSQL; the same SQL runs on SQLite).

-- One row per parcel to track: where its number came from (the subject), what to send
-- the carrier, what the carrier has said so far, and when to ask next. Rows are never
-- deleted by polling; a parcel settled past its grace period gets `stopped_at`.
CREATE TABLE parcel_watch (
    subject          TEXT    NOT NULL,
    carrier          TEXT    NOT NULL,  -- sources::carriers::Carrier
    tracking_number  TEXT    NOT NULL,
    query            TEXT    NOT NULL,  -- sources::carriers::ParcelQuery as JSON
    shipped_at       BIGINT,            -- label or ship time, ms
    promised_by      BIGINT,            -- the marketplace's latest delivery date, ms
    history          TEXT,              -- sources::carriers::history::ParcelHistory as JSON
    next_poll_at     BIGINT  NOT NULL,
    stopped_at       BIGINT,
    created_at       BIGINT  NOT NULL,
    PRIMARY KEY (subject, carrier, tracking_number)
);
CREATE INDEX parcel_watch_due ON parcel_watch (next_poll_at) WHERE stopped_at IS NULL;
