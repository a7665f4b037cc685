-- Retention (`tarefas prune` and the workers' periodic prune, crates/tarefas-store/src/prune.rs):
-- what the prune looks up must stay an index lookup however much history there is.
--
-- Finished runs by the time they ended: the prune's candidates. Partial on the terminal
-- statuses, so a live run is never in it. No index of `run_items` is added: the items of
-- a run are found and deleted through the existing unique index (run_id, record_id), and
-- an index on a column the executor changes would make its updates non-HOT
-- (migrations/0004_run_claims.sql).
CREATE INDEX runs_finished ON runs (finished_at)
    WHERE status IN ('done', 'done_with_errors', 'cancelled', 'failed');

-- Missed fires by when they were recorded.
CREATE INDEX missed_fires_recorded ON missed_fires (recorded_at);
