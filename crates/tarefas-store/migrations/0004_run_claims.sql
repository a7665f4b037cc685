-- Heap-only updates of run items, and a claim row per batch instead of an index on the
-- items' state (docs/benchmarks.md, fan-out).
--
-- An item is updated twice on its way (pending -> sending -> done). The partial index
-- `run_items_stuck` (claimed_at WHERE status = 'sending') covered both changed columns, so
-- every update wrote new entries into every index of the table. Without it, and with room
-- left on each page, the updates are heap-only (HOT).
--
-- What the index was for, finding a dead worker's items, is now done per batch: a worker
-- that claims a batch's items writes one `run_claims` row listing them, keeps its
-- `claimed_at` fresh while it works (one row, not a hundred), and deletes it when every
-- item is recorded or handed back. A claim not touched for `--stuck-after` belongs to a
-- dead worker; its items still `sending` are settled by the sweeper.
CREATE TABLE run_claims (
    id          BIGSERIAL PRIMARY KEY,
    run_id      BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    item_ids    BIGINT[] NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX run_claims_age ON run_claims (claimed_at);

-- The claim an item is `sending` under: a sweeper settles an item only through the claim
-- that holds it, never through an older claim of an item handed back and claimed again.
ALTER TABLE run_items ADD COLUMN claim_id BIGINT;

-- Items in flight when this migration runs: one claim per run, as old as its oldest item.
WITH k AS (
    INSERT INTO run_claims (run_id, item_ids, claimed_at)
    SELECT run_id, array_agg(id ORDER BY id), min(COALESCE(claimed_at, now()))
    FROM run_items WHERE status = 'sending'
    GROUP BY run_id
    RETURNING id, run_id
)
UPDATE run_items i SET claim_id = k.id FROM k WHERE i.run_id = k.run_id AND i.status = 'sending';

DROP INDEX run_items_stuck;

-- Half of each new page is left free for the new versions of its rows.
ALTER TABLE run_items SET (fillfactor = 50);

-- Planning inserts a run's items by the thousand; the foreign key to `runs` checked each
-- one with a query of its own (a quarter of Postgres' time during a fan-out). The items of
-- a run are written only by the planner of that run, which holds its row; what the key
-- did besides, deleting a run's items with it, a statement trigger does.
ALTER TABLE run_items DROP CONSTRAINT run_items_run_id_fkey;

CREATE FUNCTION runs_delete_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_items WHERE run_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_delete_items AFTER DELETE ON runs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION runs_delete_items();
