-- 003_count_parts: counts that concurrent writers never wait on.
--
-- Until now the counts triggers updated one vote_counts row per option, so every batch of
-- every worker waited for the batch before it to commit (and the worker took a lock per schema
-- to make that wait deadlock-free): more workers drained no faster. Now the counts are parts,
-- many rows per option in vote_count_parts (the former vote_counts table, without its key): a
-- statement's triggers only append its changes as new parts, so writers share no row, and now
-- and then one of them folds the parts into one row per option, under a lock that the others
-- skip instead of waiting for. vote_counts becomes a view that sums the parts, with the same
-- columns, so every reader (our result service of any version, dashboards, psql) reads the same
-- numbers as before, from one table of a few dozen rows whatever the number of votes.

ALTER TABLE vote_counts RENAME TO vote_count_parts;
ALTER TABLE vote_count_parts DROP CONSTRAINT vote_counts_pkey;

CREATE VIEW vote_counts AS
SELECT option, sum(count)::bigint AS count, max(last_voted_at) AS last_voted_at
FROM vote_count_parts
GROUP BY option;

-- copy_select_grants gives SELECT on dst to every role that has it on src: a read-only role of
-- the result service (docs/reliability.md) was granted SELECT on the tables it reads by name,
-- and a migration that replaces or adds one must not take its reading away. Owners keep what
-- they have anyway.
CREATE FUNCTION copy_select_grants(src regclass, dst regclass) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT a.grantee
        FROM pg_class AS c, aclexplode(c.relacl) AS a
        WHERE c.oid = src AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner
    LOOP
        IF g.grantee = 0 THEN
            EXECUTE format('GRANT SELECT ON %s TO PUBLIC', dst);
        ELSE
            EXECUTE format('GRANT SELECT ON %s TO %I', dst, g.grantee::regrole::text);
        END IF;
    END LOOP;
END
$$;

-- Whoever could read the table can read the view, which reads the table with its owner's
-- rights: the grant on the view is all such a role needs.
SELECT copy_select_grants('vote_count_parts', 'vote_counts');

-- fold_vote_counts replaces the parts it sees with one row per option, unless another
-- transaction is folding (it returns at once then: a writer never waits for a fold). Writers
-- only insert parts, which no one else locks, and only the folder deletes, one transaction at
-- a time, so no two writers can deadlock. A transaction's own uncommitted parts are folded
-- with the committed ones; others' uncommitted ones stay for the next fold. The lock key is
-- per schema, like the notification.
CREATE FUNCTION fold_vote_counts() RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('voting.fold.' || coalesce(current_schema(), ''), 0)) THEN
        RETURN;
    END IF;
    WITH moved AS (DELETE FROM vote_count_parts RETURNING option, count, last_voted_at)
    INSERT INTO vote_count_parts (option, count, last_voted_at)
    SELECT option, sum(count), max(last_voted_at) FROM moved GROUP BY option;
END
$$;

-- votes_count: as in 001 (the same triggers call it), but it appends parts. About one
-- statement in fold_every also folds, so that the parts stay a few dozen rows whoever writes
-- (our worker, the original worker, psql) and the view reads one page; random(), not a
-- counter, because a counter would be a row that every writer updates.
CREATE OR REPLACE FUNCTION votes_count() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    fold_every CONSTANT integer := 32;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO vote_count_parts (option, count, last_voted_at)
        SELECT vote, count(*), max(voted_at) FROM new_votes GROUP BY vote;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO vote_count_parts (option, count, last_voted_at)
        SELECT vote, sum(n), max(at) FROM (
            SELECT vote, -1 AS n, NULL::timestamptz AS at FROM old_votes
            UNION ALL
            SELECT vote, 1, voted_at FROM new_votes
        ) AS d
        GROUP BY vote HAVING sum(n) <> 0;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO vote_count_parts (option, count)
        SELECT vote, -count(*) FROM old_votes GROUP BY vote;
    ELSE -- TRUNCATE: no transition table, and nothing is left to count.
        DELETE FROM vote_count_parts;
        PERFORM pg_notify('voting_tally', TG_TABLE_SCHEMA);
        RETURN NULL;
    END IF;
    IF FOUND THEN
        IF random() * fold_every < 1 THEN
            PERFORM fold_vote_counts();
        END IF;
        PERFORM pg_notify('voting_tally', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END
$$;
