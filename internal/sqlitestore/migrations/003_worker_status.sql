-- 003_worker_status: what each worker last reported about counting, one row per worker, as in
-- the PostgreSQL store. Times in microseconds since the Unix epoch; the store's one process
-- writes and reads them with one clock.
CREATE TABLE worker_status (
    worker      TEXT PRIMARY KEY,
    seen_at     INTEGER NOT NULL,
    recorded_at INTEGER,
    backlog     INTEGER,
    drills      TEXT NOT NULL DEFAULT ''
) STRICT;
