-- 001_votes: one row per voter, and the number of votes per option kept by triggers. The
-- same tables as the PostgreSQL store, so that both behave the same.

-- voted_at is in microseconds since the Unix epoch (voting.TimePrecision): integers order
-- exactly, where text or floating-point times could round or compare as strings.
CREATE TABLE votes (
    id       TEXT PRIMARY KEY,
    vote     TEXT NOT NULL,
    voted_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Rows whose count drops to 0 stay; readers skip them. last_voted_at (microseconds) is the
-- newest vote that raised the count, for the vote-to-screen latency.
CREATE TABLE vote_counts (
    option        TEXT PRIMARY KEY,
    count         INTEGER NOT NULL,
    last_voted_at INTEGER
) STRICT, WITHOUT ROWID;

-- Triggers keep the counts right whoever writes to votes (the store, or someone with the
-- sqlite3 shell), in the writer's transaction. SQLite has row-level triggers only; at the
-- embedded mode's rates that costs little. An upsert fires the INSERT trigger when it
-- inserts and the UPDATE trigger when it updates.
CREATE TRIGGER votes_count_insert AFTER INSERT ON votes
BEGIN
    INSERT INTO vote_counts (option, count, last_voted_at) VALUES (NEW.vote, 1, NEW.voted_at)
    ON CONFLICT (option) DO UPDATE SET count = count + 1,
        last_voted_at = max(coalesce(last_voted_at, 0), excluded.last_voted_at);
END;

CREATE TRIGGER votes_count_update AFTER UPDATE ON votes
WHEN OLD.vote IS NOT NEW.vote
BEGIN
    UPDATE vote_counts SET count = count - 1 WHERE option = OLD.vote;
    INSERT INTO vote_counts (option, count, last_voted_at) VALUES (NEW.vote, 1, NEW.voted_at)
    ON CONFLICT (option) DO UPDATE SET count = count + 1,
        last_voted_at = max(coalesce(last_voted_at, 0), excluded.last_voted_at);
END;

CREATE TRIGGER votes_count_delete AFTER DELETE ON votes
BEGIN
    UPDATE vote_counts SET count = count - 1 WHERE option = OLD.vote;
END;
