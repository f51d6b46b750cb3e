-- pave's initial schema for SQLite.
--
-- Conventions (the PostgreSQL schema mirrors them with native types):
-- * timestamps are INTEGER microseconds since the Unix epoch, UTC;
-- * JSON documents are TEXT;
-- * states and run types are TEXT with Airflow's names;
-- * booleans are INTEGER 0/1.

CREATE TABLE dag (
    dag_id            TEXT    NOT NULL PRIMARY KEY,
    is_paused         INTEGER NOT NULL DEFAULT 0,
    fileloc           TEXT,
    latest_version_id INTEGER REFERENCES dag_version (id),
    last_parsed_at    INTEGER,
    created_at        INTEGER NOT NULL
);

-- Every distinct serialized form of a DAG. A run is pinned to the version
-- it started with, so a DAG file edited mid-run does not change the run.
CREATE TABLE dag_version (
    id             INTEGER NOT NULL PRIMARY KEY,
    dag_id         TEXT    NOT NULL REFERENCES dag (dag_id),
    version_number INTEGER NOT NULL,
    spec_hash      TEXT    NOT NULL,
    spec_json      TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    UNIQUE (dag_id, version_number)
);

CREATE TABLE dag_run (
    id                  INTEGER NOT NULL PRIMARY KEY,
    dag_id              TEXT    NOT NULL REFERENCES dag (dag_id),
    run_id              TEXT    NOT NULL,
    dag_version_id      INTEGER NOT NULL REFERENCES dag_version (id),
    state               TEXT    NOT NULL,
    run_type            TEXT    NOT NULL,
    logical_date        INTEGER,
    data_interval_start INTEGER,
    data_interval_end   INTEGER,
    run_after           INTEGER NOT NULL,
    conf                TEXT    NOT NULL,
    start_date          INTEGER,
    end_date            INTEGER,
    queued_at           INTEGER,
    note                TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (dag_id, run_id),
    -- As in Airflow: at most one run per logical date (NULLs are distinct).
    UNIQUE (dag_id, logical_date)
);
CREATE INDEX dag_run_state ON dag_run (state);
CREATE INDEX dag_run_dag_run_after ON dag_run (dag_id, run_after);
CREATE INDEX dag_run_run_after ON dag_run (run_after);

CREATE TABLE task_instance (
    id              INTEGER NOT NULL PRIMARY KEY,
    run_pk          INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id         TEXT    NOT NULL,
    map_index       INTEGER NOT NULL,
    -- Denormalized from dag_run so that per-dag and per-task occupancy needs no join.
    dag_id          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    try_number      INTEGER NOT NULL DEFAULT 0,
    max_tries       INTEGER NOT NULL DEFAULT 0,
    next_retry_at   INTEGER,
    start_date      INTEGER,
    end_date        INTEGER,
    duration_us     INTEGER GENERATED ALWAYS AS (end_date - start_date) VIRTUAL,
    pool            TEXT    NOT NULL,
    pool_slots      INTEGER NOT NULL,
    priority_weight INTEGER NOT NULL,
    queued_at       INTEGER,
    executor_handle TEXT,
    hostname        TEXT,
    flow_result     TEXT,
    reason          TEXT,
    updated_at      INTEGER NOT NULL,
    UNIQUE (run_pk, task_id, map_index)
);
CREATE INDEX task_instance_state ON task_instance (state);
-- Occupancy of pools, DAGs and tasks: only task instances holding a slot.
CREATE INDEX task_instance_occupying ON task_instance (pool, dag_id, task_id)
    WHERE state IN ('queued', 'running', 'restarting', 'deferred');

-- One row per attempt. Normal operation never deletes from this table, and
-- it has no cascade from task_instance: expanding or clearing a task
-- instance keeps its history.
CREATE TABLE task_instance_try (
    id              INTEGER NOT NULL PRIMARY KEY,
    run_pk          INTEGER NOT NULL REFERENCES dag_run (id),
    task_id         TEXT    NOT NULL,
    map_index       INTEGER NOT NULL,
    try_number      INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    start_date      INTEGER,
    end_date        INTEGER,
    exit_code       INTEGER,
    peak_rss_kb     INTEGER,
    hostname        TEXT,
    executor_handle TEXT,
    reason          TEXT,
    log_path        TEXT,
    updated_at      INTEGER NOT NULL,
    UNIQUE (run_pk, task_id, map_index, try_number)
);

-- An XCom belongs to a task instance: it cannot outlive or precede it.
CREATE TABLE xcom (
    run_pk     INTEGER NOT NULL,
    task_id    TEXT    NOT NULL,
    map_index  INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    size_bytes INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (run_pk, task_id, map_index, key),
    FOREIGN KEY (run_pk, task_id, map_index)
        REFERENCES task_instance (run_pk, task_id, map_index) ON DELETE CASCADE
);

CREATE TABLE pool (
    name             TEXT    NOT NULL PRIMARY KEY,
    slots            INTEGER NOT NULL,
    description      TEXT,
    include_deferred INTEGER NOT NULL DEFAULT 0
);
INSERT INTO pool (name, slots, description, include_deferred)
VALUES ('default_pool', 128, 'Default pool', 0);

CREATE TABLE import_error (
    fileloc    TEXT    NOT NULL PRIMARY KEY,
    timestamp  INTEGER NOT NULL,
    stacktrace TEXT    NOT NULL
);

-- Scheduler jobs. At most one row per job type is `running`: that row holds
-- the lease, and its heartbeat tells a newcomer whether it is still alive.
CREATE TABLE job (
    id               INTEGER NOT NULL PRIMARY KEY,
    job_type         TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    hostname         TEXT    NOT NULL,
    pid              INTEGER NOT NULL,
    start_date       INTEGER NOT NULL,
    end_date         INTEGER,
    latest_heartbeat INTEGER NOT NULL
);
CREATE UNIQUE INDEX job_one_running ON job (job_type) WHERE state = 'running';
