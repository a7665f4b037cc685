-- Operator API tokens for the admin API and the web console (`tarefas token create`).
-- Each token belongs to one account and sees only that account's tasks and runs. Only the
-- SHA-256 of the token is stored; the token itself is printed once, when it is created.
CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- A label for operators ("console de Maria", "integração CRM").
    name          TEXT NOT NULL,
    token_sha256  BYTEA NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

CREATE INDEX api_tokens_account ON api_tokens (account_id);
