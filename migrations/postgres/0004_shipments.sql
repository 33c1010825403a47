-- Order items stored whole, and parcels (PostgreSQL; the same SQL runs on SQLite).

-- The item as JSON (model::OrderItem): the fixed columns cannot hold its details. Read
-- back when present; rows written before this migration have none and are read from
-- the columns, which are still written for queries.
ALTER TABLE order_items ADD COLUMN body TEXT;

-- A parcel of a subject (an order, or a fulfillment order of another channel) as its
-- carrier last described it. Keyed within the subject: carriers reuse numbers, so a
-- number alone names no parcel for ever.
CREATE TABLE shipments (
    subject          TEXT    NOT NULL,
    carrier          TEXT    NOT NULL,
    tracking_number  TEXT    NOT NULL,
    status           TEXT    NOT NULL,  -- model::TrackingStatus
    body             TEXT    NOT NULL,  -- model::Shipment as JSON
    first_seen       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    PRIMARY KEY (subject, carrier, tracking_number)
);
-- A buyer who writes with only a tracking number is found through it.
CREATE INDEX shipments_tracking ON shipments (tracking_number);
