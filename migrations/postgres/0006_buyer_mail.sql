-- Buyer mail: the messages read from the seller's mailboxes, the replies sent, and where
-- each mailbox was read up to (PostgreSQL; the same SQL runs on SQLite).

-- One row per buyer mail, keyed by a hash of its Message-ID (else of its bytes), so a
-- mail read twice (a restart, a second mailbox, a UIDVALIDITY reset) is stored once.
CREATE TABLE buyer_messages (
    id              TEXT    PRIMARY KEY,
    mailbox         TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    account         TEXT    NOT NULL,
    order_id        TEXT,              -- the order id the buyer gave, if any
    thread          TEXT    NOT NULL,  -- the buyer (relay address) and the order: model::BuyerMessage::thread_key
    received_at     BIGINT  NOT NULL,
    do_not_answer   TEXT,              -- why no reply may go out (auto-reply, notification)
    answered_at     BIGINT,            -- the first substantive reply stopped the clock
    sla_alerted_at  BIGINT,            -- SlaAtRisk was raised
    body            TEXT    NOT NULL,  -- model::BuyerMessage as JSON
    created_at      BIGINT  NOT NULL
);
CREATE INDEX buyer_messages_open ON buyer_messages (received_at)
    WHERE answered_at IS NULL AND do_not_answer IS NULL;
CREATE INDEX buyer_messages_order ON buyer_messages (order_id);
CREATE INDEX buyer_messages_thread ON buyer_messages (thread, received_at);

-- A copy of every reply sent, as sent.
CREATE TABLE sent_replies (
    message_id      TEXT    PRIMARY KEY,  -- the reply's own Message-ID
    buyer_message   TEXT    NOT NULL,
    outbox_id       BIGINT,
    template        TEXT    NOT NULL,
    substantive     BIGINT  NOT NULL,     -- 1: stops the 24-hour clock
    sent_at         BIGINT  NOT NULL,
    body            TEXT    NOT NULL      -- the mail as sent (RFC 5322)
);
CREATE INDEX sent_replies_message ON sent_replies (buyer_message);

-- Where each mailbox was read up to (sources::mail::MailCheckpoint as JSON); moved
-- only in the transaction that stores the mails it covers.
CREATE TABLE mail_checkpoints (
    mailbox         TEXT    PRIMARY KEY,
    checkpoint      TEXT    NOT NULL,
    updated_at      BIGINT  NOT NULL
);
