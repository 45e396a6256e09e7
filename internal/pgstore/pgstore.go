// Package pgstore persists votes in PostgreSQL: one row per voter in the original app's votes
// table, where the newest vote wins, and the counts per option kept beside it by triggers so
// that the tally never scans the votes. It knows nothing about HTTP or the queue.
//
// The schema is the first existing schema of the connection's search_path, so several
// independent stores can share one database (set it in the URL, e.g.
// options=-csearch_path%3Dpoll). Locks and notifications are per schema.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/votingapp/voting/internal/broadcast"
	"github.com/votingapp/voting/internal/voting"
)

const (
	// connectTimeout bounds one connection attempt when the URL sets none, so that a
	// server that does not answer shows up as an error, not a hang.
	connectTimeout = 5 * time.Second
	// defaultMaxConns is the pool size when the URL sets no pool_max_conns.
	defaultMaxConns = 8
	// pingTimeout bounds a readiness check: a probe must answer well within its period.
	pingTimeout = 2 * time.Second
	// notifyChannel is the channel the counts triggers notify; the payload is the schema.
	notifyChannel = "voting_tally"
)

// Store records votes in and reads the tally from PostgreSQL. It is safe for concurrent
// use. The zero value is not usable; call New.
type Store struct {
	pool *pgxpool.Pool

	hub         broadcast.Hub
	listenOnce  sync.Once
	stopListen  context.CancelFunc
	listenCtx   context.Context
	listenDone  chan struct{}
	listenerPID atomic.Uint32 // backend PID of the current listener connection, 0 when none
	idleCheck   time.Duration // see the constant; tests shorten it

	// recordFailure is the schema error of the last Record, until a Record succeeds: Ping
	// reports it, so that a writer whose table does not match turns not ready, naming
	// why, instead of retrying in silence.
	recordFailure atomic.Pointer[error]
}

// New returns a store using the database at url (a postgres:// URL or key=value string).
// Pool settings can be given in the URL (pool_max_conns and the other pgxpool parameters).
//
// New does not migrate: `voting migrate` does (see Migrate), and `voting all` calls Migrate
// before New. When the database can be reached but the schema is not migrated, New fails
// and says so. When the database cannot be reached, New still returns the store: every call
// fails with an error wrapping voting.ErrUnavailable until it can, and Ping reports it, so
// a service can start before its database and report not-ready meanwhile.
func New(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default grows with the CPUs, which multiplied by the replicas can
		// exhaust the server's connections. A process needs few: a worker records one
		// batch at a time, and the tally is one small read.
		cfg.MaxConns = defaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	listenCtx, stop := context.WithCancel(context.Background())
	s := &Store{pool: pool, listenCtx: listenCtx, stopListen: stop, listenDone: make(chan struct{}), idleCheck: idleCheck}
	if err := s.checkSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// checkSchema fails when the server answers but the tables are missing. Failures to reach
// the server are left to later calls (see New).
func (s *Store) checkSchema(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	_, err := s.pool.Exec(ctx, "SELECT 1 FROM vote_counts LIMIT 0")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgUndefinedTable {
		return notMigrated(err)
	}
	return nil
}

// Close stops the watchers (their channels are closed) and closes the connections.
func (s *Store) Close() {
	s.stopListen()
	s.listenOnce.Do(func() { close(s.listenDone) }) // no listener was ever started
	<-s.listenDone
	s.hub.Close()
	s.pool.Close()
}

// recordSQL upserts a batch. It keeps one vote per voter from the batch, the newest by
// (voted_at, vote), because ON CONFLICT DO UPDATE may not touch a row twice in one statement,
// then inserts in id order: every batch locks its voters' rows in that one order, so two
// batches with voters in common (a voter's two votes taken by two workers) wait for each
// other but cannot deadlock. The counts triggers lock no shared row (migration 003), so
// batches of several workers run side by side. The WHERE clause is the ordering guard that makes redelivered and
// out-of-order votes change nothing: a stored vote is replaced only by a newer one, with the
// same order as voting.Vote.Newer. COLLATE "C" compares option ids bytewise as Go does,
// whatever the database's collation (en_US would put "B" after "a").
const recordSQL = `
INSERT INTO votes AS v (id, vote, voted_at)
SELECT id, vote, voted_at FROM (
    SELECT DISTINCT ON (id) id, vote, voted_at
    FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS b (id, vote, voted_at)
    ORDER BY id, voted_at DESC, vote COLLATE "C" DESC
) AS newest
ORDER BY id
ON CONFLICT (id) DO UPDATE SET vote = EXCLUDED.vote, voted_at = EXCLUDED.voted_at
WHERE (v.voted_at, v.vote COLLATE "C") < (EXCLUDED.voted_at, EXCLUDED.vote COLLATE "C")`

// Record stores the votes in one transaction: for each voter the newest vote wins, and a
// vote that is not newer than the stored one changes nothing. Invalid votes are rejected
// before anything is written.
//
// The transaction's statements go as one pgx batch: one round trip, which PostgreSQL runs as
// one implicit transaction (all or nothing). Against BEGIN, insert, COMMIT in separate round
// trips it saves a worker most of the time it would wait on the network.
//
// Errors that may pass (connection, timeouts, server shutting down, schema not migrated yet)
// wrap voting.ErrUnavailable; errors caused by the data do not.
func (s *Store) Record(ctx context.Context, votes []voting.Vote) error {
	if len(votes) == 0 {
		return nil
	}
	ids := make([]string, len(votes))
	opts := make([]string, len(votes))
	ats := make([]time.Time, len(votes))
	for i, v := range votes {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("record vote of %q: %w", v.VoterID, err)
		}
		ids[i], opts[i], ats[i] = v.VoterID, v.Option, v.At.UTC().Truncate(voting.TimePrecision)
	}
	b := &pgx.Batch{}
	b.Queue(recordSQL, ids, opts, ats)
	if tp := voting.NewestTraceParent(votes); tp != "" {
		b.Queue(`INSERT INTO tally_trace (traceparent) VALUES ($1)
				ON CONFLICT (id) DO UPDATE SET traceparent = EXCLUDED.traceparent`, tp)
	}
	err := classify("record votes", s.pool.SendBatch(ctx, b).Close())
	switch {
	case err == nil:
		s.recordFailure.Store(nil)
	case errors.Is(err, errSchema):
		s.recordFailure.Store(&err)
	}
	return err
}

// Tally returns the number of votes per option. It reads vote_counts, so its cost grows with
// the number of options, not votes. Options whose count is 0 are left out.
func (s *Store) Tally(ctx context.Context) (voting.Tally, error) {
	rows, err := s.pool.Query(ctx, "SELECT option, count, last_voted_at, t.traceparent FROM vote_counts LEFT JOIN tally_trace AS t ON true")
	if err != nil {
		return voting.Tally{}, classify("tally", err)
	}
	t := voting.Tally{Counts: map[string]int64{}}
	var option string
	var n int64
	var last *time.Time
	var trace *string
	_, err = pgx.ForEachRow(rows, []any{&option, &n, &last, &trace}, func() error {
		if trace != nil {
			t.NewestTrace = *trace
		}
		if n != 0 {
			t.Counts[option] = n
		}
		if last != nil && last.After(t.Newest) {
			t.Newest = last.UTC()
		}
		return nil
	})
	if err != nil {
		return voting.Tally{}, classify("tally", err)
	}
	return t, nil
}

// VoteOf returns the stored vote of a voter, and false when there is none.
func (s *Store) VoteOf(ctx context.Context, voterID string) (voting.Vote, bool, error) {
	v := voting.Vote{VoterID: voterID}
	err := s.pool.QueryRow(ctx, "SELECT vote, voted_at FROM votes WHERE id = $1", voterID).Scan(&v.Option, &v.At)
	if errors.Is(err, pgx.ErrNoRows) {
		return voting.Vote{}, false, nil
	}
	if err != nil {
		return voting.Vote{}, false, classify("vote of "+voterID, err)
	}
	v.At = v.At.UTC()
	return v, true, nil
}

// VotesOf returns the stored votes of the voters given, by voter id; a voter without a vote
// has no entry. One query for them all: an audit reads tens of thousands of voters at once,
// and again while the queue drains.
func (s *Store) VotesOf(ctx context.Context, voterIDs []string) (map[string]voting.Vote, error) {
	votes := make(map[string]voting.Vote, len(voterIDs))
	if len(voterIDs) == 0 {
		return votes, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT id, vote, voted_at FROM votes WHERE id = ANY($1)", voterIDs)
	if err != nil {
		return nil, classify("votes of voters", err)
	}
	var v voting.Vote
	_, err = pgx.ForEachRow(rows, []any{&v.VoterID, &v.Option, &v.At}, func() error {
		v.At = v.At.UTC()
		votes[v.VoterID] = v
		return nil
	})
	if err != nil {
		return nil, classify("votes of voters", err)
	}
	return votes, nil
}

// pingSQL is the tally's query, planned and not run: it fails when the database is down and
// when a table or column the tally reads is missing or not readable, and reads nothing.
// It reads nothing of votes, which result's read-only role may not read.
const pingSQL = "SELECT option, count, last_voted_at, t.traceparent FROM vote_counts LEFT JOIN tally_trace AS t ON true LIMIT 0"

// Ping checks that the database answers and that the tables the tally reads are there, and
// reports the last Record's schema error until a Record succeeds, within a short timeout so
// that a readiness probe never hangs. The tables only the writer uses (votes) are checked
// by writing: a worker turns not ready on its first refused batch, and ready again once the
// schema is fixed and its retry goes through.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, pingSQL); err != nil {
		return classify("postgres", err)
	}
	if err := s.recordFailure.Load(); err != nil {
		return *err
	}
	return nil
}

// SQLSTATE codes and classes; see the PostgreSQL manual, appendix A.
const (
	pgUndefinedTable          = "42P01"
	pgInsufficientPrivilege   = "42501"
	pgNotNullViolation        = "23502"
	pgClassDataException      = "22"
	pgClassIntegrityBroken    = "23"
	pgClassSyntaxOrAccessRule = "42"
)

// errSchema marks the errors of a database that does not match the schema this version
// expects (a table or column missing or of another type, a function gone, a privilege
// missing): SQLSTATE class 42. They are not the votes' fault, so votes are never
// dead-lettered for them, and they do not pass by themselves: someone must migrate, undo a
// change to the tables, or grant a privilege. Record's callers retry them as unavailable;
// Ping reports them, so readiness names them.
var errSchema = errors.New("the database does not match this version's schema")

func notMigrated(err error) error {
	return fmt.Errorf("schema not migrated: run `voting migrate`: %w: %w: %w", errSchema, voting.ErrUnavailable, err)
}

// schemaMismatch wraps a class 42 error other than a missing table.
func schemaMismatch(pgErr *pgconn.PgError, err error) error {
	do := "run `voting migrate` of this version, or undo the change to the tables"
	if pgErr.Code == pgInsufficientPrivilege {
		do = "grant this role what it needs on the tables, or use the role that owns them"
	}
	return fmt.Errorf("%w (SQLSTATE %s): %s; votes wait in the queue meanwhile: %w: %w", errSchema, pgErr.Code, do, voting.ErrUnavailable, err)
}

// classify wraps err with what failed, and with voting.ErrUnavailable unless the data
// caused it. Only data exceptions (class 22) and integrity violations (class 23) are the
// data's fault: a worker may dead-letter the votes. With the tables `voting migrate` makes,
// no vote that passed Vote.Validate raises either; a CHECK constraint or a foreign key
// someone added to votes can. Everything else is not the votes' fault, and retrying is
// right (dead-lettering would lose good votes): connection loss, timeouts, serialization
// failures and deadlocks (08, 40), resource shortage and shutdown (53, 57P) pass by
// themselves; a schema that does not match and missing privileges (42), and a NOT NULL
// column added without a default (23502), need someone, and are marked with errSchema so
// that readiness reports them.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == pgNotNullViolation:
			// Record writes no NULL: a column added to votes without a default refuses
			// every vote alike, which is the table's fault, not the votes'.
			return fmt.Errorf("%s: %w", what, schemaMismatch(pgErr, err))
		case strings.HasPrefix(pgErr.Code, pgClassDataException), strings.HasPrefix(pgErr.Code, pgClassIntegrityBroken):
			return fmt.Errorf("%s: %w", what, err)
		case pgErr.Code == pgUndefinedTable:
			return fmt.Errorf("%s: %w", what, notMigrated(err))
		case strings.HasPrefix(pgErr.Code, pgClassSyntaxOrAccessRule):
			return fmt.Errorf("%s: %w", what, schemaMismatch(pgErr, err))
		}
	}
	return fmt.Errorf("%s: %w: %w", what, voting.ErrUnavailable, err)
}

// reportStatusSQL replaces a worker's status and forgets workers not seen for a day (pods
// that are gone); $2 is the age of its last record in microseconds, NULL for none since it
// started, which keeps the stored one.
const reportStatusSQL = `
WITH gone AS (DELETE FROM worker_status WHERE seen_at < now() - interval '1 day')
INSERT INTO worker_status AS s (worker, seen_at, recorded_at, backlog, drills)
VALUES ($1, now(), now() - make_interval(secs => $2::bigint / 1e6), $3, $4)
ON CONFLICT (worker) DO UPDATE SET seen_at = EXCLUDED.seen_at,
    recorded_at = coalesce(EXCLUDED.recorded_at, s.recorded_at), backlog = EXCLUDED.backlog, drills = EXCLUDED.drills`

// ReportStatus keeps the worker's status (see voting.StatusKeeper).
func (s *Store) ReportStatus(ctx context.Context, worker string, recorded time.Duration, backlog int64, drills []string) error {
	var ago *int64
	if recorded >= 0 {
		us := recorded.Microseconds()
		ago = &us
	}
	var bl *int64
	if backlog >= 0 {
		bl = &backlog
	}
	_, err := s.pool.Exec(ctx, reportStatusSQL, worker, ago, bl, strings.Join(drills, "\n"))
	return classify("report worker status", err)
}

// WorkerStatuses returns the statuses of the workers seen within the last day, their ages
// measured on the database's clock.
func (s *Store) WorkerStatuses(ctx context.Context) ([]voting.WorkerStatus, error) {
	rows, err := s.pool.Query(ctx, `SELECT worker,
		extract(epoch FROM now() - seen_at) * 1e6,
		coalesce(extract(epoch FROM now() - recorded_at) * 1e6, -1),
		coalesce(backlog, -1), drills
		FROM worker_status WHERE seen_at >= now() - interval '1 day' ORDER BY worker`)
	if err != nil {
		return nil, classify("worker statuses", err)
	}
	var out []voting.WorkerStatus
	var st voting.WorkerStatus
	var seen, recorded float64
	var drills string
	_, err = pgx.ForEachRow(rows, []any{&st.Worker, &seen, &recorded, &st.Backlog, &drills}, func() error {
		st.Seen, st.Recorded = time.Duration(seen)*time.Microsecond, time.Duration(recorded)*time.Microsecond
		if recorded < 0 {
			st.Recorded = -1
		}
		st.Drills = splitDrills(drills)
		out = append(out, st)
		return nil
	})
	if err != nil {
		return nil, classify("worker statuses", err)
	}
	return out, nil
}

// splitDrills reads the drills column: the notices, one a line.
func splitDrills(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
