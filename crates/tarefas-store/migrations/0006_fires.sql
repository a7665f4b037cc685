-- Fires (issue 16): never a burst, and an overlap policy per task.
--
-- Every fire the scheduler does not run is kept in `missed_fires` with why: coalesced into a
-- later fire, later than the misfire grace, skipped or replaced under the task's `overlap`,
-- or dropped by an edit. The rows written before this migration were all late fires.
ALTER TABLE missed_fires ADD COLUMN reason TEXT;
UPDATE missed_fires SET reason = 'later than the misfire grace' WHERE reason IS NULL;
-- `run list` shows them newest first, across an account's tasks.
CREATE INDEX missed_fires_by_time ON missed_fires (scheduled_for DESC);

-- `overlap: queue_one`: the task's one pending fire, emitted when its previous run ends.
ALTER TABLE tasks ADD COLUMN queued_fire_at TIMESTAMPTZ;
CREATE INDEX tasks_queued ON tasks (queued_fire_at) WHERE queued_fire_at IS NOT NULL;
-- When the scheduler last emitted a fire of the task (its clock, not the fire's time): a
-- fire emitted whose run does not exist yet (its message waits in the outbox or the queue)
-- is the task's run in progress for the overlap check, for a while.
ALTER TABLE tasks ADD COLUMN last_emitted_at TIMESTAMPTZ;

-- The overlap check: a task's runs that have not ended (any status but the final ones, so
-- that a status added later counts as live until it is listed here). Small (live runs
-- only), so it stays cheap however long the history grows.
CREATE INDEX runs_live ON runs (task_id, id)
    WHERE status NOT IN ('done', 'done_with_errors', 'cancelled', 'failed');
