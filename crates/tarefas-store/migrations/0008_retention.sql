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

-- A run, once pruned, must not come back: a message older than the retention (an
-- `ExecuteTask` replayed from the dead-letter queue, a delivery long delayed) would
-- otherwise find no run for its request id and plan the same fire again. The prune keeps
-- the request id of every run it deletes (one small row per run, never per item), and a
-- run is never created again for one of them: the insert makes no row, and the planner
-- dead-letters the message (`runs::create_or_get`: "run for request … vanished").
CREATE TABLE pruned_runs (
    request_id  TEXT PRIMARY KEY,
    pruned_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION runs_refuse_pruned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pruned_runs WHERE request_id = NEW.request_id) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER runs_refuse_pruned BEFORE INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION runs_refuse_pruned();
