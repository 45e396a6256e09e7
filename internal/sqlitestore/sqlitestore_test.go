package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/migrations"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

func newTestStore(t testing.TB) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestContract(t *testing.T) {
	votingtest.TestStore(t, func(t *testing.T) votingtest.Store {
		s, _ := newTestStore(t)
		return s
	})
}

// TestRestart checks that votes survive closing and reopening the store, and that
// reopening does not migrate again.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	now := voting.Now()
	votes := []voting.Vote{
		{VoterID: "v1", Option: "a", At: now}, {VoterID: "v2", Option: "b", At: now},
		{VoterID: "v1", Option: "b", At: now.Add(time.Millisecond)},
	}
	if err := s.Record(ctx, votes); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s, err = Open(ctx, dir)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		tally, err := s.Tally(ctx)
		got := tally.Counts
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int64{"b": 2}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Tally after reopening = %v, want %v", got, want)
		}
		v, ok, err := s.VoteOf(ctx, "v1")
		if err != nil || !ok || v.Option != "b" || !v.At.Equal(now.Add(time.Millisecond)) {
			t.Fatalf("VoteOf(v1) after reopening = %v, %v, %v", v, ok, err)
		}
		var n int
		if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if ms, _ := migrations.Load(migrationFiles, "migrations"); n != len(ms) {
			t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenConcurrently opens one new file from several goroutines, as two processes
// starting together would: each migration must be applied once, without error.
func TestOpenConcurrently(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 5)
	stores := make([]*Store, 5)
	for i := range errs {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), dir) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open #%d: %v", i, err)
		} else {
			defer stores[i].Close()
		}
	}
}

// TestCountTriggers writes to votes with plain SQL, as someone with the sqlite3 shell would.
func TestCountTriggers(t *testing.T) {
	s, _ := newTestStore(t)
	votingtest.TestCountTriggers(t, s, []string{
		"INSERT INTO votes (id, vote, voted_at) VALUES ('v1', 'a', 1), ('v2', 'a', 1), ('v3', 'b', 1)",
		`INSERT INTO votes (id, vote, voted_at) VALUES ('v1', 'b', 2), ('v2', 'a', 2), ('v4', 'c', 2)
		 ON CONFLICT (id) DO UPDATE SET vote = excluded.vote, voted_at = excluded.voted_at`,
		"UPDATE votes SET vote = 'c' WHERE vote = 'b'",
		"UPDATE votes SET voted_at = 3",
		"DELETE FROM votes WHERE id = 'v2'",
		"INSERT INTO votes (id, vote, voted_at) VALUES ('v5', 'b', 4) ON CONFLICT (id) DO NOTHING",
		"INSERT OR REPLACE INTO votes (id, vote, voted_at) VALUES ('v5', 'a', 5)",
		"DELETE FROM votes",
		"INSERT INTO votes (id, vote, voted_at) VALUES ('v6', 'b', 6)",
	}, func(ctx context.Context, stmt string) error {
		_, err := s.w.ExecContext(ctx, stmt)
		return err
	}, func(ctx context.Context) (map[string]int64, error) {
		rows, err := s.r.QueryContext(ctx, "SELECT vote, count(*) FROM votes GROUP BY vote")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		counts := map[string]int64{}
		for rows.Next() {
			var option string
			var n int64
			if err := rows.Scan(&option, &n); err != nil {
				return nil, err
			}
			counts[option] = n
		}
		return counts, rows.Err()
	})
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(context.Background(), file); err == nil {
		s.Close()
		t.Fatal("Open with a file as data dir succeeded")
	}
}

// TestBusyIsUnavailable holds the file's write lock from another connection: Record must
// fail with ErrUnavailable once its context ends, not hang and not blame the votes.
func TestBusyIsUnavailable(t *testing.T) {
	s, dir := newTestStore(t)
	other, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = s.Record(ctx, []voting.Vote{{VoterID: "v", Option: "a", At: voting.Now()}})
	if !errors.Is(err, voting.ErrUnavailable) {
		t.Fatalf("Record while another connection writes: %v, want ErrUnavailable", err)
	}
}

func TestPing(t *testing.T) {
	s, _ := newTestStore(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestOpenReadOnly: a reader of another process's file sees its votes as they are written,
// cannot write, and never creates a store where there is none.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "typo")
	if r, err := OpenReadOnly(ctx, missing); err == nil {
		r.Close()
		t.Fatal("OpenReadOnly of a directory without a store: no error")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenReadOnly of a missing directory left %s behind (%v)", missing, err)
	}

	w, dir := newTestStore(t)
	r, err := OpenReadOnly(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	now := voting.Now()
	for i, o := range []string{"a", "b"} {
		if err := w.Record(ctx, []voting.Vote{{VoterID: "v1", Option: o, At: now.Add(time.Duration(i) * time.Millisecond)}}); err != nil {
			t.Fatal(err)
		}
		got, err := r.VotesOf(ctx, []string{"v1", "v2"})
		if err != nil || len(got) != 1 || got["v1"].Option != o {
			t.Fatalf("reader after the writer recorded %s: %v, %v", o, got, err)
		}
	}
	if err := r.Record(ctx, []voting.Vote{{VoterID: "v2", Option: "a", At: now}}); err == nil {
		t.Error("Record through a read-only store: no error")
	}
	if got, err := w.VotesOf(ctx, []string{"v2"}); err != nil || len(got) != 0 {
		t.Errorf("after a read-only Record: %v, %v; want nothing written", got, err)
	}

	// The writer stopped (its WAL checkpointed and removed): an audit after the drill.
	stopped := t.TempDir()
	w2, err := Open(ctx, stopped)
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Record(ctx, []voting.Vote{{VoterID: "v3", Option: "b", At: now}}); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := OpenReadOnly(ctx, stopped)
	if err != nil {
		t.Fatalf("OpenReadOnly after the writer stopped: %v", err)
	}
	defer r2.Close()
	if got, err := r2.VotesOf(ctx, []string{"v3"}); err != nil || got["v3"].Option != "b" {
		t.Fatalf("reader after the writer stopped: %v, %v", got, err)
	}
}
