package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/votingapp/voting/internal/migrations"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

// newTestSchema creates a schema of its own for the test and returns a URL whose
// search_path is that schema. The schema is dropped when the test ends.
func newTestSchema(t testing.TB) string {
	t.Helper()
	base := votingtest.RequireServer(t, "VOTING_TEST_POSTGRES_URL")
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("connect for cleanup: %v", err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", "-csearch_path="+schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// newTestStore returns a migrated store in a schema of its own, closed when the test ends.
func newTestStore(t testing.TB) (*Store, string) {
	t.Helper()
	dsn := newTestSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := New(ctx, dsn)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s, dsn
}

func mustConnect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestContract(t *testing.T) {
	votingtest.TestStore(t, func(t *testing.T) votingtest.Store {
		s, _ := newTestStore(t)
		return s
	})
}

// TestContractUnderLinguisticCollation runs the contract with the vote column collated
// like en_US, where "a" sorts before "B": the tie-break must still follow voting.Vote.Newer,
// which compares bytes.
func TestContractUnderLinguisticCollation(t *testing.T) {
	votingtest.TestStore(t, func(t *testing.T) votingtest.Store {
		s, dsn := newTestStore(t)
		c := mustConnect(t, dsn)
		ctx := context.Background()
		var ok bool
		if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu')").Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Skip("the server has no ICU collation en-US-x-icu")
		}
		// The counts' tables sum and group only: the vote column is where order matters.
		if _, err := c.Exec(ctx, `ALTER TABLE votes ALTER COLUMN vote TYPE text COLLATE "en-US-x-icu"`); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMigrateConcurrently(t *testing.T) {
	dsn := newTestSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = Migrate(ctx, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i, err)
		}
	}
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	ms, err := migrations.Load(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	c := mustConnect(t, dsn)
	rows, err := c.Query(ctx, "SELECT version, name FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Version int
		Name    string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d: %v", len(got), len(ms), got)
	}
	for i, m := range ms {
		if got[i].Version != m.Version || got[i].Name != m.Name {
			t.Errorf("schema_migrations row %d = %v, want %d %s", i, got[i], m.Version, m.Name)
		}
	}
	s, err := New(ctx, dsn)
	if err != nil {
		t.Fatalf("New after concurrent migrations: %v", err)
	}
	defer s.Close()
	if err := s.Record(ctx, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}}); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateNeedsSchema(t *testing.T) {
	base := votingtest.RequireServer(t, "VOTING_TEST_POSTGRES_URL")
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("options", "-csearch_path=t_does_not_exist")
	u.RawQuery = q.Encode()
	err := Migrate(context.Background(), u.String())
	if err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Fatalf("Migrate into a missing schema: %v, want an error saying to create it", err)
	}
}

func TestNewNotMigrated(t *testing.T) {
	dsn := newTestSchema(t)
	s, err := New(context.Background(), dsn)
	if err == nil {
		s.Close()
		t.Fatal("New on an empty schema succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "voting migrate") {
		t.Errorf("New on an empty schema: %v, want it to say `voting migrate`", err)
	}
}

// TestOriginalResultQuery checks that the original result app's query still works.
func TestOriginalResultQuery(t *testing.T) {
	s, dsn := newTestStore(t)
	ctx := context.Background()
	now := voting.Now()
	mustRecordVotes(t, s, []voting.Vote{
		{VoterID: "v1", Option: "a", At: now}, {VoterID: "v2", Option: "a", At: now},
		{VoterID: "v3", Option: "b", At: now}, {VoterID: "v1", Option: "b", At: now.Add(time.Second)},
	})
	got, err := queryCounts(ctx, mustConnect(t, dsn), "SELECT vote, COUNT(id) AS count FROM votes GROUP BY vote")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"a": 1, "b": 2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("original result query = %v, want %v", got, want)
	}
}

// TestUpgradeOriginalTable migrates a database that the original app used: its votes
// stay, are counted, and lose to any newer vote.
func TestUpgradeOriginalTable(t *testing.T) {
	dsn := newTestSchema(t)
	ctx := context.Background()
	c := mustConnect(t, dsn)
	_, err := c.Exec(ctx, `CREATE TABLE votes (id VARCHAR(255) NOT NULL UNIQUE, vote VARCHAR(255) NOT NULL);
		INSERT INTO votes (id, vote) VALUES ('x1', 'a'), ('x2', 'a'), ('x3', 'b')`)
	if err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantCounts(t, s, map[string]int64{"a": 2, "b": 1})
	mustRecordVotes(t, s, []voting.Vote{{VoterID: "x1", Option: "b", At: voting.Now()}})
	wantCounts(t, s, map[string]int64{"a": 1, "b": 2})
	// The original worker inserts only id and vote.
	if _, err := c.Exec(ctx, "INSERT INTO votes (id, vote) VALUES ('x4', 'a')"); err != nil {
		t.Fatalf("original worker's insert: %v", err)
	}
	wantCounts(t, s, map[string]int64{"a": 2, "b": 2})
}

// TestCountTriggers writes to votes with plain SQL, as an operator or another app would,
// including INSERT ... ON CONFLICT DO UPDATE: PostgreSQL must fire both the INSERT and the
// UPDATE statement triggers with their transition tables, which is what the counts rely on.
func TestCountTriggers(t *testing.T) {
	s, dsn := newTestStore(t)
	c := mustConnect(t, dsn)
	votingtest.TestCountTriggers(t, s, []string{
		"INSERT INTO votes (id, vote, voted_at) VALUES ('v1', 'a', now()), ('v2', 'a', now()), ('v3', 'b', now())",
		// One insert and two updates, one of which keeps its vote.
		`INSERT INTO votes (id, vote, voted_at) VALUES ('v1', 'b', now()), ('v2', 'a', now()), ('v4', 'c', now())
		 ON CONFLICT (id) DO UPDATE SET vote = EXCLUDED.vote, voted_at = EXCLUDED.voted_at`,
		"UPDATE votes SET vote = 'c' WHERE vote = 'b'",
		"UPDATE votes SET voted_at = now()",
		"UPDATE votes SET id = id || '-renamed' WHERE id = 'v4'",
		"DELETE FROM votes WHERE id = 'v2'",
		"INSERT INTO votes (id, vote, voted_at) VALUES ('v5', 'a', now()) ON CONFLICT (id) DO NOTHING",
		"INSERT INTO votes (id, vote, voted_at) VALUES ('v5', 'b', now()) ON CONFLICT (id) DO NOTHING",
		"TRUNCATE votes",
		"INSERT INTO votes (id, vote, voted_at) VALUES ('v6', 'b', now())",
	}, func(ctx context.Context, stmt string) error {
		_, err := c.Exec(ctx, stmt)
		return err
	}, func(ctx context.Context) (map[string]int64, error) {
		return queryCounts(ctx, c, "SELECT vote, count(*) FROM votes GROUP BY vote")
	})
}

// queryCounts runs a query of (option, count) rows and returns the counts.
func queryCounts(ctx context.Context, c *pgx.Conn, query string) (map[string]int64, error) {
	rows, err := c.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	var option string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&option, &n}, func() error { counts[option] = n; return nil })
	return counts, err
}

// TestNoSignalWithoutChange checks that the triggers notify only when counts change.
func TestNoSignalWithoutChange(t *testing.T) {
	s, _ := newTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := s.Watch(ctx)
	v := voting.Vote{VoterID: "v", Option: "a", At: voting.Now()}
	mustRecordVotes(t, s, []voting.Vote{v})
	waitFor(t, w, 10*time.Second)
	drain(w, 300*time.Millisecond)
	mustRecordVotes(t, s, []voting.Vote{v}) // redelivery
	v.At = v.At.Add(time.Second)
	mustRecordVotes(t, s, []voting.Vote{v}) // newer, same option: counts unchanged
	select {
	case <-w:
		t.Fatal("signal after records that changed no count")
	case <-time.After(500 * time.Millisecond):
	}
}

// TestWatchIsPerSchema checks that changes in another schema of the same database do not
// signal.
func TestWatchIsPerSchema(t *testing.T) {
	s1, _ := newTestStore(t)
	s2, _ := newTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := s1.Watch(ctx)
	waitFor(t, w, 10*time.Second) // listening
	drain(w, 300*time.Millisecond)
	mustRecordVotes(t, s2, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}})
	select {
	case <-w:
		t.Fatal("signal for a change in another schema")
	case <-time.After(500 * time.Millisecond):
	}
	mustRecordVotes(t, s1, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}})
	waitFor(t, w, 10*time.Second)
}

// TestWatchReconnects kills the listener's connection on the server: the watcher must
// reconnect by itself, signal once it listens again, and signal later changes.
func TestWatchReconnects(t *testing.T) {
	s, dsn := newTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := s.Watch(ctx)
	waitFor(t, w, 10*time.Second) // the signal sent once listening
	pid := s.listenerPID.Load()
	if pid == 0 {
		t.Fatal("no listener connection after the first signal")
	}
	drain(w, 300*time.Millisecond)
	c := mustConnect(t, dsn)
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	waitFor(t, w, 10*time.Second) // the signal sent after reconnecting
	if got := s.listenerPID.Load(); got == pid || got == 0 {
		t.Fatalf("listener pid after reconnecting = %d, was %d", got, pid)
	}
	drain(w, 300*time.Millisecond)
	mustRecordVotes(t, s, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}})
	waitFor(t, w, 10*time.Second)
}

// TestWatchIdleCheck shortens the idle check: the listener must keep its connection across
// checks, send no signal for them, and still relay changes.
func TestWatchIdleCheck(t *testing.T) {
	s, _ := newTestStore(t)
	s.idleCheck = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := s.Watch(ctx)
	waitFor(t, w, 10*time.Second)
	pid := s.listenerPID.Load()
	select {
	case <-w:
		t.Fatal("signal without a change during idle checks")
	case <-time.After(time.Second): // about 20 checks
	}
	if got := s.listenerPID.Load(); got != pid {
		t.Fatalf("listener pid changed from %d to %d during idle checks", pid, got)
	}
	mustRecordVotes(t, s, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}})
	waitFor(t, w, 10*time.Second)
}

// TestWatchClosedByClose checks that Close closes the watchers' channels.
func TestWatchClosedByClose(t *testing.T) {
	dsn := newTestSchema(t)
	ctx := context.Background()
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx)
	s.Close()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-w:
			if !ok {
				if _, ok := <-s.Watch(ctx); ok {
					t.Fatal("Watch after Close returned an open channel")
				}
				return
			}
		case <-timeout:
			t.Fatal("watch channel still open 10s after Close")
		}
	}
}

// TestUnavailable points a store at a port where nothing listens: every call must fail
// with an error wrapping voting.ErrUnavailable, so that the worker retries instead of
// dead-lettering good votes.
func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatalf("New must not fail while the database is down: %v", err)
	}
	defer s.Close()
	err = s.Record(ctx, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}})
	if !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Record with the server down: %v, want an error wrapping ErrUnavailable", err)
	}
	if _, err := s.Tally(ctx); !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Tally with the server down: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Ping with the server down: %v, want ErrUnavailable", err)
	}
	if err := Migrate(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"); !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Migrate with the server down: %v, want ErrUnavailable", err)
	}
}

// TestUnavailableWhenConnectionKilled kills a pooled connection in the middle of use.
func TestUnavailableWhenConnectionKilled(t *testing.T) {
	s, dsn := newTestStore(t)
	ctx := context.Background()
	c := mustConnect(t, dsn)
	// Hold the voter's row, so that Record waits on the server with its connection busy.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO votes (id, vote, voted_at) VALUES ('v', 'b', now())"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Record(ctx, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}}) }()
	// Poll from another connection: within a transaction, pg_stat_activity is a snapshot.
	poll := mustConnect(t, dsn)
	var pid int32
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		// The backend that c's transaction blocks.
		err := poll.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)) LIMIT 1`,
			int32(c.PgConn().PID())).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("Record is not waiting for the row")
	}
	if _, err := tx.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, voting.ErrUnavailable) {
			t.Fatalf("Record on a killed connection: %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Record still running 10s after its connection was killed")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{&pgconn.PgError{Code: "22001"}, false}, // string_data_right_truncation
		{&pgconn.PgError{Code: "23505"}, false}, // unique_violation
		{&pgconn.PgError{Code: "08006"}, true},  // connection_failure
		{&pgconn.PgError{Code: "40001"}, true},  // serialization_failure
		{&pgconn.PgError{Code: "40P01"}, true},  // deadlock_detected
		{&pgconn.PgError{Code: "53300"}, true},  // too_many_connections
		{&pgconn.PgError{Code: "57P01"}, true},  // admin_shutdown
		{&pgconn.PgError{Code: "42P01"}, true},  // undefined_table: not migrated yet
		{&pgconn.PgError{Code: "42703"}, true},  // undefined_column: a schema mismatch, retried
		{&pgconn.PgError{Code: "42501"}, true},  // insufficient_privilege
		{&pgconn.PgError{Code: "23502"}, true},  // not_null_violation: a column added without a default
		{context.DeadlineExceeded, true},
		{errors.New("unexpected EOF"), true},
	} {
		err := classify("test", tc.err)
		if got := errors.Is(err, voting.ErrUnavailable); got != tc.unavailable {
			t.Errorf("classify(%v): unavailable = %v, want %v", tc.err, got, tc.unavailable)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("classify(%v) = %v, does not wrap the error", tc.err, err)
		}
	}
}

func TestPing(t *testing.T) {
	s, _ := newTestStore(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func mustRecordVotes(t testing.TB, s *Store, votes []voting.Vote) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Record(ctx, votes); err != nil {
		t.Fatalf("Record: %v", err)
	}
}

func wantCounts(t *testing.T, s *Store, want map[string]int64) {
	t.Helper()
	tally, err := s.Tally(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := tally.Counts; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Tally = %v, want %v", got, want)
	}
}

func waitFor(t *testing.T, w <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case _, ok := <-w:
		if !ok {
			t.Fatal("watch channel closed")
		}
	case <-time.After(d):
		t.Fatalf("no watch signal within %v", d)
	}
}

func drain(w <-chan struct{}, quiet time.Duration) {
	for {
		select {
		case <-w:
		case <-time.After(quiet):
			return
		}
	}
}

// TestRecordIsAllOrNothing: a batch is one transaction, sent in one round trip. When its last
// statement fails (here the trace row: PostgreSQL text cannot hold a NUL byte) the votes
// written before it in the batch are rolled back too.
func TestRecordIsAllOrNothing(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	at := voting.Now()
	good := []voting.Vote{{VoterID: "v1", Option: "a", At: at}, {VoterID: "v2", Option: "b", At: at}}
	bad := append(append([]voting.Vote(nil), good...), voting.Vote{VoterID: "v3", Option: "a", At: at.Add(time.Second), TraceParent: "00-\x00"})
	if err := s.Record(ctx, bad); err == nil {
		t.Fatal("a batch whose trace row cannot be written was recorded")
	}
	if tally, err := s.Tally(ctx); err != nil || len(tally.Counts) != 0 {
		t.Fatalf("after the failed batch: counts %v (%v), want none", tally.Counts, err)
	}
	if _, ok, err := s.VoteOf(ctx, "v1"); err != nil || ok {
		t.Fatalf("after the failed batch: v1 recorded (%v)", err)
	}
	// The store is usable after the failure: the connection's implicit transaction ended.
	if err := s.Record(ctx, good); err != nil {
		t.Fatal(err)
	}
	if tally, err := s.Tally(ctx); err != nil || tally.Counts["a"] != 1 || tally.Counts["b"] != 1 {
		t.Fatalf("after the good batch: counts %v (%v), want a 1, b 1", tally.Counts, err)
	}
}

// TestSchemaMismatch: a table that does not match (a column renamed away, SQLSTATE 42703)
// is not the votes' fault: Record fails with an error the worker retries (never
// dead-letters), and Ping, which readiness runs, names the mismatch, for the tally's tables
// at once and for votes from the first refused write until a write succeeds again.
func TestSchemaMismatch(t *testing.T) {
	s, dsn := newTestStore(t)
	ctx := context.Background()
	c := mustConnect(t, dsn)
	exec := func(sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	vote := []voting.Vote{{VoterID: "v1", Option: "a", At: voting.Now()}}
	code := "23502"
	wantMismatch := func(what string, err error) {
		t.Helper()
		if err == nil || !errors.Is(err, errSchema) || !errors.Is(err, voting.ErrUnavailable) || !strings.Contains(err.Error(), code) {
			t.Fatalf("%s: %v; want the schema mismatch named (SQLSTATE %s), retryable", what, err, code)
		}
	}

	// A column added without a default refuses every vote alike: not the votes' fault.
	exec("ALTER TABLE votes ADD COLUMN added text NOT NULL")
	wantMismatch("Record", s.Record(ctx, vote))
	wantMismatch("Ping after the refused write", s.Ping(ctx))
	exec("ALTER TABLE votes DROP COLUMN added")
	mustRecordVotes(t, s, vote)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the write went through: %v", err)
	}

	code = "42703"
	vote[0].At = voting.Now()

	exec("ALTER TABLE votes RENAME COLUMN voted_at TO voted_at_gone")
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping before any write: %v (votes is checked by writing)", err)
	}
	wantMismatch("Record", s.Record(ctx, vote))
	wantMismatch("Ping after the refused write", s.Ping(ctx))
	exec("ALTER TABLE votes RENAME COLUMN voted_at_gone TO voted_at")
	wantMismatch("Ping before the retry", s.Ping(ctx))
	mustRecordVotes(t, s, vote)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the write went through: %v", err)
	}
	wantCounts(t, s, map[string]int64{"a": 1})

	exec("ALTER TABLE vote_counts RENAME COLUMN last_voted_at TO gone")
	wantMismatch("Ping with a column of the tally gone", s.Ping(ctx))
	exec("ALTER TABLE vote_counts RENAME COLUMN gone TO last_voted_at")
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once the tally's column is back: %v", err)
	}
}
