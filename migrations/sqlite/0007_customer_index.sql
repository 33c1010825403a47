-- One customer across channels (SQLite; the same SQL runs on PostgreSQL).

-- The keys each order's customer is indexed under (customers::index_keys): a real
-- e-mail address or a normalised name. Rewritten with the order in ingest.
CREATE TABLE customer_keys (
    key       TEXT NOT NULL,   -- 'email:<address>' or 'name:<normalised name>'
    channel   TEXT NOT NULL,
    order_id  TEXT NOT NULL,
    PRIMARY KEY (key, channel, order_id)
);
CREATE INDEX customer_keys_order ON customer_keys (channel, order_id);
