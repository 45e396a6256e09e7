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

-- Whoever may read the counts may read this too: a read-only role of the result service
-- (docs/reliability.md) was granted SELECT on vote_counts by name.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT a.grantee
        FROM pg_class AS c, aclexplode(c.relacl) AS a
        WHERE c.oid = 'vote_counts'::regclass AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner
    LOOP
        IF g.grantee = 0 THEN
            GRANT SELECT ON worker_status TO PUBLIC;
        ELSE
            EXECUTE format('GRANT SELECT ON worker_status TO %I', g.grantee::regrole::text);
        END IF;
    END LOOP;
END
$$;
