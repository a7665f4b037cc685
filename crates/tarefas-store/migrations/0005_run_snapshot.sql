-- A run executes what was planned: each run keeps a snapshot of its task's validated
-- definition, taken in the statement that creates the run, with the task's version.
-- Editing a task bumps `tasks.version` and changes only runs created afterwards.
ALTER TABLE tasks ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

ALTER TABLE runs ADD COLUMN task_version BIGINT;
ALTER TABLE runs ADD COLUMN definition JSONB;

-- Runs that exist already: their task's current definition (the best there is).
UPDATE runs r SET task_version = t.version, definition = t.definition
FROM tasks t WHERE t.id = r.task_id;

-- A row inserted without a snapshot (a tool, a test's fixture) takes its task's, in the same
-- statement; `runs::create_or_get` always gives it explicitly.
CREATE FUNCTION runs_snapshot_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT t.version, t.definition INTO NEW.task_version, NEW.definition
    FROM tasks t WHERE t.id = NEW.task_id;
    RETURN NEW;
END $$;
CREATE TRIGGER runs_snapshot_task BEFORE INSERT ON runs
    FOR EACH ROW WHEN (NEW.definition IS NULL) EXECUTE FUNCTION runs_snapshot_task();

ALTER TABLE runs ALTER COLUMN task_version SET NOT NULL;
ALTER TABLE runs ALTER COLUMN definition SET NOT NULL;
