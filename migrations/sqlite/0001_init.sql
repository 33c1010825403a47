-- nightdesk schema, SQLite. Times are epoch milliseconds (BIGINT) so the SQL is the
-- same as on PostgreSQL; flags are 0/1.

CREATE TABLE orders (
    channel         TEXT    NOT NULL,
    order_id        TEXT    NOT NULL,
    account         TEXT    NOT NULL,
    marketplace_id  TEXT,
    status          TEXT    NOT NULL,
    fulfillment     TEXT,
    purchase_date   BIGINT  NOT NULL,
    last_update     BIGINT  NOT NULL,
    status_since    BIGINT  NOT NULL,
    first_seen      BIGINT  NOT NULL,
    content_hash    TEXT    NOT NULL,
    body            TEXT    NOT NULL,  -- the order as JSON, without its items
    PRIMARY KEY (channel, order_id)
);
CREATE INDEX orders_open ON orders (status, purchase_date);

CREATE TABLE order_items (
    channel                 TEXT    NOT NULL,
    order_id                TEXT    NOT NULL,
    item_id                 TEXT    NOT NULL,
    position                BIGINT  NOT NULL,
    asin                    TEXT,
    sku                     TEXT,
    title                   TEXT,
    quantity_ordered        BIGINT  NOT NULL,
    quantity_shipped        BIGINT  NOT NULL,
    price_amount            TEXT,
    price_currency          TEXT,
    tax_amount              TEXT,
    tax_currency            TEXT,
    buyer_requested_cancel  BIGINT  NOT NULL,
    buyer_cancel_reason     TEXT,
    PRIMARY KEY (channel, order_id, item_id),
    FOREIGN KEY (channel, order_id) REFERENCES orders (channel, order_id) ON DELETE CASCADE
);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    subject       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    at            BIGINT  NOT NULL,
    processed_at  BIGINT
);
CREATE INDEX events_pending ON events (processed_at, id);
CREATE INDEX events_subject ON events (subject);

CREATE TABLE checkpoints (
    source      TEXT    PRIMARY KEY,
    watermark   BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    rule              TEXT    NOT NULL,
    rule_version      TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    payload           TEXT    NOT NULL,
    state             TEXT    NOT NULL,  -- planned | dry_run | claimed | retry | done | failed | unknown
    attempts          BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT  NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    fence             BIGINT  NOT NULL DEFAULT 0,
    last_error        TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_subject ON outbox (subject);

CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT  NOT NULL,
    outbox_id  BIGINT,
    subject    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    detail     TEXT    NOT NULL
);
CREATE INDEX audit_subject ON audit (subject, id);
