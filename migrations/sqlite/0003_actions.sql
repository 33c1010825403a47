-- Issue 4: actions done exactly once.
-- group_key: alerts of one channel and rule, folded into one message per window.
-- progress:  the executor's durable checkpoint (feed document and feed ids, a send in
--            flight), JSON; kept across attempts so a retry can read back first.
-- decided_by: who approved or rejected a held (or unknown) action.
ALTER TABLE outbox ADD COLUMN group_key TEXT;
ALTER TABLE outbox ADD COLUMN progress TEXT;
ALTER TABLE outbox ADD COLUMN decided_by TEXT;
CREATE INDEX outbox_group ON outbox (group_key, state, next_attempt_at);
