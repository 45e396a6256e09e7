-- 004_worker_status: what each worker last reported about counting, one row per worker (so
-- that workers never write the same row), for the result page's line on whether counting is
-- up to date. seen_at and recorded_at are the database's clock: readers compare them with
-- now() here, whatever the clocks of the machines that write and read.
CREATE TABLE worker_status (
    worker      text PRIMARY KEY,
    seen_at     timestamptz NOT NULL,
    recorded_at timestamptz,
    backlog     bigint,
    drills      text NOT NULL DEFAULT ''
);

-- Whoever may read the counts may read this too (the result service reads both).
SELECT copy_select_grants('vote_counts', 'worker_status');
