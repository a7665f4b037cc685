-- Campaign safety (docs/task-file.md, "Running safely"): runs held for approval, test runs
-- over chosen records and retries of failed items, the account's guards (audience guard,
-- send window, frequency cap, opt-out words), the opt-out list, and the ledger of Flows
-- started per contact that the frequency cap counts.

-- A run that plans more records than its `max_records` waits for an operator.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN
    ('planning', 'awaiting_approval', 'running', 'paused', 'done', 'done_with_errors', 'cancelled', 'failed'));

-- What a manual request asks beyond "run the task": only these records of its segment
-- (`task run --only`, `run retry-failed`). Written with the request's outbox row; the
-- planner reads it by request id when it creates the run.
CREATE TABLE run_requests (
    request_id      TEXT PRIMARY KEY,
    only_records    BIGINT[],
    -- The run whose failed items this request retries.
    retry_of        BIGINT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE runs ADD COLUMN only_records BIGINT[];
ALTER TABLE runs ADD COLUMN retry_of BIGINT;
ALTER TABLE runs ADD COLUMN approved_by TEXT;
-- Items wait for the send window until then (shown as "aguardando janela de envio").
ALTER TABLE runs ADD COLUMN waiting_until TIMESTAMPTZ;

-- The account's defaults for the guards; a task's own settings win (its cap only when
-- stricter). One row per account that sets any.
CREATE TABLE account_guards (
    account_id              BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    max_records             BIGINT CHECK (max_records > 0),
    cap_max                 INTEGER CHECK (cap_max > 0),
    cap_period_s            BIGINT CHECK (cap_period_s > 0),
    -- {"from": "08:00", "to": "20:00", "days": ["mon", …]}, as the task file writes it.
    send_window             JSONB,
    -- Whole-message words that opt a contact out; NULL: SAIR, PARAR, STOP, CANCELAR.
    opt_out_words           TEXT[],
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((cap_max IS NULL) = (cap_period_s IS NULL))
);

-- The opt-out list: no Flow is ever started for these contacts.
CREATE TABLE suppressions (
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact_id  BIGINT NOT NULL,
    -- cli, api, csv, webhook
    source      TEXT NOT NULL,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, contact_id)
);

-- Every Flow started for a contact (or about to be: `confirmed = false` while its call is in
-- flight under a frequency cap). The cap counts the rows of its window.
CREATE TABLE flow_starts (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact_id  BIGINT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    run_id      BIGINT,
    item_id     BIGINT,
    confirmed   BOOLEAN NOT NULL DEFAULT true
);
CREATE INDEX flow_starts_by_contact ON flow_starts (account_id, contact_id, started_at);
CREATE INDEX flow_starts_by_time ON flow_starts (started_at);

-- The Flows recorded before this migration count too: every done item of a Flow run on
-- contacts, and of a Flow run on chats whose chat's contact the mirror knows.
INSERT INTO flow_starts (account_id, contact_id, started_at, run_id, item_id, confirmed)
SELECT r.account_id, i.record_id, COALESCE(i.finished_at, r.started_at), r.id, i.id, true
FROM run_items i JOIN runs r ON r.id = i.run_id
WHERE i.status = 'done' AND r.definition -> 'action' ? 'flow'
  AND COALESCE(r.definition ->> 'table', 'contacts') = 'contacts';
INSERT INTO flow_starts (account_id, contact_id, started_at, run_id, item_id, confirmed)
SELECT r.account_id, c.contact_id, COALESCE(i.finished_at, r.started_at), r.id, i.id, true
FROM run_items i JOIN runs r ON r.id = i.run_id
JOIN chats c ON c.account_id = r.account_id AND c.id = i.record_id
WHERE i.status = 'done' AND r.definition -> 'action' ? 'flow'
  AND r.definition ->> 'table' = 'chats' AND c.contact_id IS NOT NULL;

-- The runs whose items wait for their send window, by when it opens.
CREATE INDEX runs_waiting ON runs (waiting_until) WHERE waiting_until IS NOT NULL;
