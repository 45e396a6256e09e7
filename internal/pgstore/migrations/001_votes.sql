-- 001_votes: one row per voter, and the number of votes per option kept by triggers.

-- The original app created votes (id VARCHAR(255) NOT NULL UNIQUE, vote VARCHAR(255) NOT NULL),
-- and its result page reads SELECT vote, COUNT(id) AS count FROM votes GROUP BY vote; both
-- columns keep their names and meaning. A database that the original app used keeps its
-- table and rows: it only gains voted_at, and its votes count as cast at the epoch, so any
-- new vote of the same voter replaces them. ON CONFLICT (id) works with its UNIQUE index.
CREATE TABLE IF NOT EXISTS votes (
    id       text PRIMARY KEY,
    vote     text NOT NULL,
    voted_at timestamptz NOT NULL
);
ALTER TABLE votes ADD COLUMN IF NOT EXISTS voted_at timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00';
-- Writers that know only id and vote (the original worker) keep working: their votes count
-- as cast when written.
ALTER TABLE votes ALTER COLUMN voted_at SET DEFAULT now();

-- vote_counts makes the tally cost the same with 10 votes or 10 million. Rows whose count
-- drops to 0 stay; readers skip them.
-- last_voted_at is the time of the newest vote that raised the count, so that the result
-- service can tell how long a vote took to reach the screen.
CREATE TABLE vote_counts (
    option        text PRIMARY KEY,
    count         bigint NOT NULL,
    last_voted_at timestamptz
);
INSERT INTO vote_counts (option, count, last_voted_at) SELECT vote, count(*), max(voted_at) FROM votes GROUP BY vote;

-- votes_count applies a statement's changes to vote_counts: -1 for every old row, +1 for
-- every new row, summed per option. Statement-level triggers with transition tables do this
-- once per statement instead of once per row, and keep the counts right whoever writes to
-- votes (our upsert, the original worker, an operator's psql). INSERT ... ON CONFLICT DO
-- UPDATE fires both the INSERT trigger (inserted rows) and the UPDATE trigger (updated rows).
-- Count rows are changed in option order, so that two statements never wait on each other in
-- opposite orders. The notification carries the schema's name, so that listeners of one
-- schema ignore the others; PostgreSQL delivers it at commit, once per transaction.
-- search_path is pinned to the one of the migration, so that the function finds vote_counts
-- beside votes whatever the writer's search_path.
CREATE FUNCTION votes_count() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO vote_counts AS c (option, count, last_voted_at)
        SELECT vote, count(*), max(voted_at) FROM new_votes GROUP BY vote ORDER BY vote
        ON CONFLICT (option) DO UPDATE SET count = c.count + EXCLUDED.count,
            last_voted_at = GREATEST(c.last_voted_at, EXCLUDED.last_voted_at);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO vote_counts AS c (option, count, last_voted_at)
        SELECT vote, sum(n), max(at) FROM (
            SELECT vote, -1 AS n, NULL::timestamptz AS at FROM old_votes
            UNION ALL
            SELECT vote, 1, voted_at FROM new_votes
        ) AS d
        GROUP BY vote HAVING sum(n) <> 0 ORDER BY vote
        ON CONFLICT (option) DO UPDATE SET count = c.count + EXCLUDED.count,
            last_voted_at = GREATEST(c.last_voted_at, EXCLUDED.last_voted_at);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO vote_counts AS c (option, count)
        SELECT vote, -count(*) FROM old_votes GROUP BY vote ORDER BY vote
        ON CONFLICT (option) DO UPDATE SET count = c.count + EXCLUDED.count;
    ELSE -- TRUNCATE: no transition table, and nothing is left to count.
        DELETE FROM vote_counts;
    END IF;
    IF FOUND THEN
        PERFORM pg_notify('voting_tally', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER votes_count_insert AFTER INSERT ON votes
    REFERENCING NEW TABLE AS new_votes
    FOR EACH STATEMENT EXECUTE FUNCTION votes_count();
CREATE TRIGGER votes_count_update AFTER UPDATE ON votes
    REFERENCING OLD TABLE AS old_votes NEW TABLE AS new_votes
    FOR EACH STATEMENT EXECUTE FUNCTION votes_count();
CREATE TRIGGER votes_count_delete AFTER DELETE ON votes
    REFERENCING OLD TABLE AS old_votes
    FOR EACH STATEMENT EXECUTE FUNCTION votes_count();
CREATE TRIGGER votes_count_truncate AFTER TRUNCATE ON votes
    FOR EACH STATEMENT EXECUTE FUNCTION votes_count();
