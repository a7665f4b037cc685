-- Tarefas schema, version 1. Every table that holds an account's data carries account_id, and
-- every query the code issues filters on it.

CREATE TABLE accounts (
    id                  BIGSERIAL PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    company_id          BIGINT,
    -- Where the Huggy API token is read from at run time: 'env:VAR' or 'file:/path'.
    -- The token itself is never stored.
    token_ref           TEXT,
    -- Where the webhook token is read from ('env:VAR' or 'file:/path'), never the token.
    webhook_token_ref   TEXT,
    rate_limit_per_s    INTEGER NOT NULL DEFAULT 10 CHECK (rate_limit_per_s > 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    objective       TEXT,
    -- The validated task file, as JSON (interval recurrences anchored at creation).
    definition      JSONB NOT NULL,
    table_name      TEXT NOT NULL CHECK (table_name IN ('contacts', 'chats')),
    recurrence_kind TEXT NOT NULL,
    time_zone       TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'deleted')),
    -- The next scheduled fire; NULL for manual tasks and ended recurrences.
    next_fire_at    TIMESTAMPTZ,
    last_fire_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tasks_by_account ON tasks (account_id, id);
-- The scheduler's claim: due active tasks, oldest first.
CREATE INDEX tasks_due ON tasks (next_fire_at) WHERE status = 'active' AND next_fire_at IS NOT NULL;

-- The mirror of Huggy's contacts. Text used by filters is stored normalized by Tarefas
-- (lower-cased with Unicode rules, phones as digits) so that matching never depends on the
-- database's collation; custom fields are stored as given and in their parsed forms.
CREATE TABLE contacts (
    account_id          BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id                  BIGINT NOT NULL,
    name                TEXT,
    name_lc             TEXT,
    email               TEXT,
    email_lc            TEXT,
    mobile              TEXT,   -- digits only
    phone               TEXT,   -- digits only
    created_at          TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ,
    group_id            BIGINT,
    group_name          TEXT,
    group_name_lc       TEXT,
    organization_id     BIGINT,
    organization_name   TEXT,
    organization_name_lc TEXT,
    -- {key: text} as Huggy gives it.
    custom              JSONB NOT NULL DEFAULT '{}',
    -- {key: lower-cased text}, non-empty values only.
    custom_lc           JSONB NOT NULL DEFAULT '{}',
    -- {key: number} for values that parse as numbers (tarefas_core::segment::custom_number).
    custom_num          JSONB NOT NULL DEFAULT '{}',
    -- {key: {"d": "YYYY-MM-DD"} | {"l": "YYYY-MM-DDTHH:MM:SS"} | {"t": RFC 3339 UTC}}
    -- for values that parse as dates, local date-times or instants.
    custom_date         JSONB NOT NULL DEFAULT '{}',
    synced_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id)
);
CREATE INDEX contacts_created ON contacts (account_id, created_at);
CREATE INDEX contacts_updated ON contacts (account_id, updated_at);
CREATE INDEX contacts_org ON contacts (account_id, organization_id);
CREATE INDEX contacts_org_name ON contacts (account_id, organization_name_lc);
CREATE INDEX contacts_group ON contacts (account_id, group_id);
CREATE INDEX contacts_synced ON contacts (account_id, synced_at);

-- The mirror of Huggy's open chats (auto, wait_for_chat, in_chat only).
CREATE TABLE chats (
    account_id          BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id                  BIGINT NOT NULL,
    contact_id          BIGINT,
    situation           TEXT NOT NULL CHECK (situation IN ('auto', 'wait_for_chat', 'in_chat')),
    department_id       BIGINT,
    department_name     TEXT,
    department_name_lc  TEXT,
    channel_id          BIGINT,
    channel_uuid        TEXT,
    channel_name        TEXT,
    channel_name_lc     TEXT,
    workflow_id         BIGINT,
    workflow_name       TEXT,
    workflow_name_lc    TEXT,
    workflow_step_id    BIGINT,
    workflow_step_name  TEXT,
    workflow_step_name_lc TEXT,
    created_at          TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ,
    last_message_at     TIMESTAMPTZ,
    synced_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id)
);
CREATE INDEX chats_situation ON chats (account_id, situation);
CREATE INDEX chats_department ON chats (account_id, department_id);
CREATE INDEX chats_last_message ON chats (account_id, last_message_at);
CREATE INDEX chats_contact ON chats (account_id, contact_id);
CREATE INDEX chats_synced ON chats (account_id, synced_at);

CREATE TABLE runs (
    id                  BIGSERIAL PRIMARY KEY,
    account_id          BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    task_id             BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- Idempotency: a duplicated ExecuteTask finds the run it already made.
    request_id          TEXT NOT NULL UNIQUE,
    trigger             TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled')),
    scheduled_for       TIMESTAMPTZ,
    requested_by        TEXT,
    status              TEXT NOT NULL DEFAULT 'planning'
                        CHECK (status IN ('planning', 'running', 'paused', 'done', 'done_with_errors', 'cancelled', 'failed')),
    status_reason       TEXT,
    cancel_requested    BOOLEAN NOT NULL DEFAULT false,
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ,
    -- Planning checkpoint: the last record id frozen into run_items.
    plan_cursor         BIGINT,
    planned             BIGINT NOT NULL DEFAULT 0,
    done                BIGINT NOT NULL DEFAULT 0,
    skipped             BIGINT NOT NULL DEFAULT 0,
    failed              BIGINT NOT NULL DEFAULT 0,
    unknown             BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX runs_one_per_fire ON runs (task_id, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX runs_by_task ON runs (account_id, task_id, id DESC);
CREATE INDEX runs_by_start ON runs (started_at);

CREATE TABLE run_items (
    id          BIGSERIAL PRIMARY KEY,
    run_id      BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    record_id   BIGINT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sending', 'done', 'skipped', 'failed', 'unknown')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    reason      TEXT,
    claimed_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    UNIQUE (run_id, record_id)
);
CREATE INDEX run_items_stuck ON run_items (claimed_at) WHERE status = 'sending';

-- Transactional outbox: rows written in the scheduler's transaction, published with
-- confirms by the relay, deleted only after the confirm.
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    routing_key TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Fires the scheduler did not emit because they were later than the misfire grace.
CREATE TABLE missed_fires (
    task_id         BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    scheduled_for   TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, scheduled_for)
);
