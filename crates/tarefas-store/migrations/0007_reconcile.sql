-- The reconciler (crates/tarefas-store/src/reconcile.rs): runs whose messages are gone are
-- found from the database and get their messages again, with backoff per run.
--
-- `last_progress_at`: when the run last moved (a page planned, an item settled). Written by
-- the statements that already update the run row (a planning page, the batch's outcome
-- statement), never by a statement of its own. NULL on rows older than this migration:
-- readers use COALESCE(last_progress_at, started_at).
ALTER TABLE runs ADD COLUMN last_progress_at TIMESTAMPTZ;
-- How many times in a row the reconciler republished the run without it moving since, and
-- when it may do so next (doubling, up to a cap).
ALTER TABLE runs ADD COLUMN reconcile_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN next_reconcile_at TIMESTAMPTZ;
-- The run's progress (planned + settled) when it was last republished: more since means
-- the republish worked, and the backoff starts over.
ALTER TABLE runs ADD COLUMN reconciled_progress BIGINT NOT NULL DEFAULT 0;

-- No index for the reconciler: a partial index on unfinished runs would be chosen by the
-- claim statement's look at its run (`runs_pkey` only, checked by
-- `batch_statements_use_only_the_primary_key`); the reconciler's scan of `runs` every
-- `--reconcile-every` is cheap next to that.

-- Runs under way when this migration runs count as having moved now (not at their start),
-- so that an upgrade does not republish every one of them at once.
UPDATE runs SET last_progress_at = now() WHERE status IN ('planning', 'running');
