-- Authentication for the REST API and the web UI (same conventions as 0001).
--
-- Secrets are never stored: an API token and a session cookie are random
-- strings handed to their owner once; the store keeps their SHA-256 (hex),
-- which is enough to recognise them and useless to whoever reads the file.
-- Passwords are argon2 PHC strings.

CREATE TABLE app_user (
    id            INTEGER NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    -- viewer, user, op or admin (Airflow's roles).
    role          TEXT    NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_token (
    id         INTEGER NOT NULL PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    -- NULL: never expires.
    expires_at INTEGER
);
CREATE INDEX api_token_user ON api_token (user_id);

CREATE TABLE web_session (
    session_hash TEXT    NOT NULL PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    csrf_token   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX web_session_expiry ON web_session (expires_at);

-- Listings of task instances by DAG across runs (the REST API's `~` run).
CREATE INDEX task_instance_dag_task ON task_instance (dag_id, task_id);
