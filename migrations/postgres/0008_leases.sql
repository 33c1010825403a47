-- Leases on scheduled work (one poller per account, one sweep, one summary…) so that
-- several instances on one database never do the same work at once. A lease that is
-- not renewed expires; the fence grows by one each time the lease changes hands.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,   -- 'poll/amazon/eu', 'sweep', 'summary', …
    holder      TEXT NOT NULL,      -- the instance's name
    expires_at  BIGINT NOT NULL,    -- epoch ms; 0 once released
    fence       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL     -- when the current holder took it
);
