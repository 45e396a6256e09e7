// Package sqlitestore persists votes in a SQLite file: the embedded default store, so that
// `voting all` works on a machine with nothing installed and keeps its votes across
// restarts. It has the same tables and newest-wins semantics as the PostgreSQL store and
// passes the same contract tests. It uses modernc.org/sqlite (pure Go, no cgo), and knows
// nothing about HTTP or the queue.
//
// The file belongs to one process: Watch signals only the writes of this process.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/votingapp/voting/internal/broadcast"
	"github.com/votingapp/voting/internal/migrations"
	"github.com/votingapp/voting/internal/voting"
)

// FileName is the database file's name in the data directory.
const FileName = "voting.db"

const (
	// busyTimeout is how long a statement waits for another connection's lock (another
	// process, or a reader during a checkpoint) before it fails with SQLITE_BUSY.
	busyTimeout = 10 * time.Second
	// readConns bounds the readers. In WAL mode they run alongside the writer; the
	// result service needs one or two.
	readConns = 4
	// pingTimeout bounds a readiness check.
	pingTimeout = 2 * time.Second
)

// Store records votes in and reads the tally from a SQLite file. It is safe for concurrent
// use within one process. The zero value is not usable; call Open.
type Store struct {
	w   *sql.DB // the one writer
	r   *sql.DB // readers
	hub broadcast.Hub
}

// Open opens, creating it if needed, the database dir/voting.db (creating dir too) and
// applies the embedded migrations it lacks.
//
// Settings, and why:
//   - WAL journal: readers (the tally) never wait for the writer and the writer never waits
//     for them.
//   - synchronous=FULL: a vote is on disk when Record returns, even if the machine loses
//     power right after. NORMAL would survive a crash of the process but not of the
//     machine. The worker commits batches, so the cost is one fsync per batch, not per
//     vote. (With the in-process queue a crash still loses the votes queued but not yet
//     recorded: the embedded mode's weak point is the queue, not this file.)
//   - One write connection with BEGIN IMMEDIATE: SQLite allows one writer anyway;
//     queueing writers in the connection pool is cheaper and fairer than having them
//     retry on SQLITE_BUSY, and taking the write lock at BEGIN avoids the deadlock of two
//     readers upgrading at once.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("sqlite data dir: %w", err)
	}
	file, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("sqlite data dir: %w", err)
	}
	pragmas := url.Values{"_pragma": {
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"journal_mode(WAL)",
		"synchronous(FULL)",
		// So that INSERT OR REPLACE, which deletes the row it replaces, fires the delete
		// trigger and keeps the counts right. Our triggers do not recurse.
		"recursive_triggers(1)",
	}}
	// A file: URI, so that names with '?' or '#' in them stay names.
	base := "file:" + (&url.URL{Path: filepath.ToSlash(file)}).EscapedPath() + "?"

	w, err := sql.Open("sqlite", base+pragmas.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("%s: %w", file, err)
	}

	pragmas["_pragma"] = append(pragmas["_pragma"], "query_only(1)")
	r, err := sql.Open("sqlite", base+pragmas.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	s := &Store{w: w, r: r}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenReadOnly opens the database dir/voting.db that another process (`voting all`) writes,
// to read it: nothing is created or migrated, and every connection is query_only. So a
// mistyped directory is an error, not a new empty store that would read as "every vote
// lost", and a reader (`voting audit`) cannot change what it checks. Record fails; Watch
// never signals (only this process's writes would).
func OpenReadOnly(ctx context.Context, dir string) (*Store, error) {
	file, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("sqlite data dir: %w", err)
	}
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("no SQLite store in %s: %w", dir, err)
	}
	// No journal_mode: the writer set WAL, which is kept in the file, and changing it is a
	// write.
	pragmas := url.Values{"_pragma": {
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"query_only(1)",
	}}
	r, err := sql.Open("sqlite", "file:"+(&url.URL{Path: filepath.ToSlash(file)}).EscapedPath()+"?"+pragmas.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	s := &Store{w: r, r: r} // Record's writes meet query_only and fail
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

// Close closes the watchers' channels and the database.
func (s *Store) Close() error {
	s.hub.Close()
	return errors.Join(s.r.Close(), s.w.Close()) // closing one DB twice (OpenReadOnly) is a no-op
}

// upsertSQL is one vote's upsert. The WHERE clause is the ordering guard that makes
// redelivered and out-of-order votes change nothing: a stored vote is replaced only by a
// newer one, with the same order as voting.Vote.Newer (SQLite compares text bytewise, as
// Go does). Applied one vote after the other in a transaction, the newest of a batch wins
// whatever its place in the batch.
const upsertSQL = `
INSERT INTO votes (id, vote, voted_at) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET vote = excluded.vote, voted_at = excluded.voted_at
WHERE (votes.voted_at, votes.vote) < (excluded.voted_at, excluded.vote)`

// Record stores the votes in one transaction: for each voter the newest vote wins, and a
// vote that is not newer than the stored one changes nothing. Invalid votes are rejected
// before anything is written. Watchers are signalled after a commit that changed a row.
func (s *Store) Record(ctx context.Context, votes []voting.Vote) error {
	if len(votes) == 0 {
		return nil
	}
	for _, v := range votes {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("record vote of %q: %w", v.VoterID, err)
		}
	}
	changed, err := s.record(ctx, votes)
	if err != nil {
		return classify("record votes", err)
	}
	if changed {
		s.hub.Broadcast()
	}
	return nil
}

func (s *Store) record(ctx context.Context, votes []voting.Vote) (changed bool, err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the error that made us roll back is the one to report
		}
	}()
	stmt, err := tx.PrepareContext(ctx, upsertSQL)
	if err != nil {
		return false, err
	}
	defer stmt.Close()
	for _, v := range votes {
		res, err := stmt.ExecContext(ctx, v.VoterID, v.Option, v.At.Truncate(voting.TimePrecision).UnixMicro())
		if err != nil {
			return false, err
		}
		// An upsert whose guard fails changes no row.
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			changed = true
		}
	}
	if tp := voting.NewestTraceParent(votes); tp != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tally_trace (id, traceparent) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET traceparent = excluded.traceparent`, tp); err != nil {
			return false, err
		}
	}
	return changed, tx.Commit()
}

// Tally returns the number of votes per option. It reads vote_counts, so its cost grows with
// the number of options, not votes. Options whose count is 0 are left out.
func (s *Store) Tally(ctx context.Context) (voting.Tally, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT option, count, last_voted_at, t.traceparent FROM vote_counts LEFT JOIN tally_trace AS t ON 1")
	if err != nil {
		return voting.Tally{}, classify("tally", err)
	}
	defer rows.Close()
	t := voting.Tally{Counts: map[string]int64{}}
	for rows.Next() {
		var option string
		var n int64
		var last sql.NullInt64
		var trace sql.NullString
		if err := rows.Scan(&option, &n, &last, &trace); err != nil {
			return voting.Tally{}, classify("tally", err)
		}
		t.NewestTrace = trace.String
		if n != 0 {
			t.Counts[option] = n
		}
		if at := time.UnixMicro(last.Int64).UTC(); last.Valid && at.After(t.Newest) {
			t.Newest = at
		}
	}
	if err := rows.Err(); err != nil {
		return voting.Tally{}, classify("tally", err)
	}
	return t, nil
}

// VoteOf returns the stored vote of a voter, and false when there is none.
func (s *Store) VoteOf(ctx context.Context, voterID string) (voting.Vote, bool, error) {
	v := voting.Vote{VoterID: voterID}
	var at int64
	err := s.r.QueryRowContext(ctx, "SELECT vote, voted_at FROM votes WHERE id = ?", voterID).Scan(&v.Option, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return voting.Vote{}, false, nil
	}
	if err != nil {
		return voting.Vote{}, false, classify("vote of "+voterID, err)
	}
	v.At = time.UnixMicro(at).UTC()
	return v, true, nil
}

// votesOfChunk bounds the voter ids of one query of VotesOf: SQLite limits a statement's
// parameters (32,766 since 3.32, 999 before), and a few hundred per query cost next to
// nothing more than one query for all.
const votesOfChunk = 500

// VotesOf returns the stored votes of the voters given, by voter id; a voter without a vote
// has no entry.
func (s *Store) VotesOf(ctx context.Context, voterIDs []string) (map[string]voting.Vote, error) {
	votes := make(map[string]voting.Vote, len(voterIDs))
	for chunk := range slices.Chunk(voterIDs, votesOfChunk) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := "SELECT id, vote, voted_at FROM votes WHERE id IN (?" + strings.Repeat(",?", len(chunk)-1) + ")"
		if err := s.votesOf(ctx, votes, q, args); err != nil {
			return nil, classify("votes of voters", err)
		}
	}
	return votes, nil
}

func (s *Store) votesOf(ctx context.Context, into map[string]voting.Vote, q string, args []any) error {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v voting.Vote
		var at int64
		if err := rows.Scan(&v.VoterID, &v.Option, &at); err != nil {
			return err
		}
		v.At = time.UnixMicro(at).UTC()
		into[v.VoterID] = v
	}
	return rows.Err()
}

// Ping checks that the database file can be read and is migrated.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	rows, err := s.r.QueryContext(ctx, "SELECT 1 FROM vote_counts LIMIT 0")
	if err != nil {
		return classify("sqlite", err)
	}
	return classify("sqlite", rows.Close())
}

// Watch returns a channel that receives a value soon after a Record of this store committed
// a change. The channel has room for one value: while one is pending, further changes add
// nothing, so a slow reader sees one signal for many changes and never holds Record up. The
// channel is closed when ctx is done or the store is closed.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	return s.hub.Subscribe(ctx)
}

// classify wraps err with what failed, and with voting.ErrUnavailable unless the data caused
// it: constraint violations, type mismatches and values too big are the data's fault (a
// worker may dead-letter the votes). Busy or locked files, I/O errors, a full disk and
// canceled calls are not, and may pass.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) {
		switch sqlErr.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE:
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return fmt.Errorf("%s: %w: %w", what, voting.ErrUnavailable, err)
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate applies the migrations that db lacks, each in its own transaction with the
// record of it in schema_migrations. BEGIN IMMEDIATE takes the file's write lock first, so
// two processes opening the same file apply each migration once.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := migrations.Load(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := retryBusy(ctx, func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }() // a no-op after Commit
			_, err = tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    INTEGER PRIMARY KEY,
				name       TEXT NOT NULL,
				applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
			) STRICT`)
			if err != nil {
				return err
			}
			var applied bool
			err = tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)", m.Version).Scan(&applied)
			if err != nil || applied {
				return err
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", m.Version, m.Name); err != nil {
				return err
			}
			return tx.Commit()
		})
		if err != nil {
			return fmt.Errorf("migration %03d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// retryBusy runs f again while it fails with SQLITE_BUSY, for at most busyTimeout. When
// several connections open a new file together, BEGIN IMMEDIATE sometimes fails with
// SQLITE_BUSY at once, without the busy handler's wait (SQLite skips the handler where
// waiting could deadlock, as while another connection switches the file to WAL): seen in
// TestOpenConcurrently under -race. f must be a whole transaction.
func retryBusy(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(busyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := f()
		var sqlErr *sqlite.Error
		if !errors.As(err, &sqlErr) || sqlErr.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// ReportStatus keeps the worker's status (see voting.StatusKeeper), and forgets workers not
// seen for a day.
func (s *Store) ReportStatus(ctx context.Context, worker string, recorded time.Duration, backlog int64, drills []string) error {
	now := time.Now()
	var at, bl any // NULL unless known
	if recorded >= 0 {
		at = now.Add(-recorded).UnixMicro()
	}
	if backlog >= 0 {
		bl = backlog
	}
	err := retryBusy(ctx, func() error {
		_, err := s.w.ExecContext(ctx, `INSERT INTO worker_status (worker, seen_at, recorded_at, backlog, drills) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (worker) DO UPDATE SET seen_at = excluded.seen_at,
				recorded_at = coalesce(excluded.recorded_at, worker_status.recorded_at), backlog = excluded.backlog, drills = excluded.drills`,
			worker, now.UnixMicro(), at, bl, strings.Join(drills, "\n"))
		if err == nil {
			_, err = s.w.ExecContext(ctx, "DELETE FROM worker_status WHERE seen_at < ?", now.Add(-24*time.Hour).UnixMicro())
		}
		return err
	})
	return classify("report worker status", err)
}

// WorkerStatuses returns the statuses of the workers seen within the last day.
func (s *Store) WorkerStatuses(ctx context.Context) ([]voting.WorkerStatus, error) {
	now := time.Now()
	rows, err := s.r.QueryContext(ctx, `SELECT worker, seen_at, coalesce(recorded_at, -1), coalesce(backlog, -1), drills
		FROM worker_status WHERE seen_at >= ? ORDER BY worker`, now.Add(-24*time.Hour).UnixMicro())
	if err != nil {
		return nil, classify("worker statuses", err)
	}
	defer rows.Close()
	var out []voting.WorkerStatus
	for rows.Next() {
		var st voting.WorkerStatus
		var seen, recorded int64
		var drills string
		if err := rows.Scan(&st.Worker, &seen, &recorded, &st.Backlog, &drills); err != nil {
			return nil, classify("worker statuses", err)
		}
		if drills != "" {
			st.Drills = strings.Split(drills, "\n")
		}
		st.Seen, st.Recorded = now.Sub(time.UnixMicro(seen)), -1
		if recorded >= 0 {
			st.Recorded = now.Sub(time.UnixMicro(recorded))
		}
		out = append(out, st)
	}
	return out, classify("worker statuses", rows.Err())
}
