package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/migrations"
	"github.com/votingapp/voting/internal/voting"
)

// countDeltas returns how many parts of the counts wait to be folded: the rows of
// vote_count_parts beyond one per option.
func countDeltas(t *testing.T, dsn string) int {
	t.Helper()
	var n int
	if err := mustConnect(t, dsn).QueryRow(context.Background(), "SELECT count(*) - count(DISTINCT option) FROM vote_count_parts").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWritersDoNotWaitForEachOther holds a transaction open that has written votes for every
// option, as a worker's batch does until it commits: a second writer's batch, for other voters
// of the same options, must still go through. Before migration 003 it waited for the first to
// commit (the counts were one row per option, and Record took a lock per schema first), so
// workers recorded one batch at a time however many there were.
func TestWritersDoNotWaitForEachOther(t *testing.T) {
	s, dsn := newTestStore(t)
	ctx := context.Background()
	tx, err := mustConnect(t, dsn).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, recordSQL, []string{"held-1", "held-2"}, []string{"a", "b"},
		[]time.Time{voting.Now(), voting.Now()}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := voting.Now()
	if err := s.Record(rctx, []voting.Vote{{VoterID: "other-1", Option: "a", At: now}, {VoterID: "other-2", Option: "b", At: now}}); err != nil {
		t.Fatalf("Record while another batch is open: %v (it waited for the other batch)", err)
	}
	wantCounts(t, s, map[string]int64{"a": 1, "b": 1})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, map[string]int64{"a": 2, "b": 2})
}

// TestFold checks that the parts of the counts are folded into one row per option without
// changing a count: by an explicit fold, and by the writers themselves (about one statement in
// 32), so that they stay few however many votes are recorded.
func TestFold(t *testing.T) {
	s, dsn := newTestStore(t)
	ctx := context.Background()
	c := mustConnect(t, dsn)
	base := voting.Now()
	// 600 batches: each statement fires two triggers (insert and update), 1,200 chances to
	// fold; without any fold, 1,200 parts would wait.
	for i := range 600 {
		option := []string{"a", "b", "c"}[i%3]
		mustRecordVotes(t, s, []voting.Vote{{VoterID: fmt.Sprint("v", i%400), Option: option, At: base.Add(time.Duration(i) * time.Millisecond)}})
	}
	// Voter v<k> voted in batch k and, when k < 200, again in batch k+400, which wins.
	want := map[string]int64{}
	for k := range 400 {
		last := k
		if k < 200 {
			last = k + 400
		}
		want[[]string{"a", "b", "c"}[last%3]]++
	}
	wantCounts(t, s, want)
	if n := countDeltas(t, dsn); n >= 300 {
		t.Errorf("%d parts waiting after 600 batches: the writers do not fold", n)
	}
	if _, err := c.Exec(ctx, "SELECT fold_vote_counts()"); err != nil {
		t.Fatal(err)
	}
	if n := countDeltas(t, dsn); n != 0 {
		t.Errorf("%d parts waiting after a fold, want 0", n)
	}
	wantCounts(t, s, want)
	got, err := queryCounts(ctx, c, "SELECT vote, count(*) FROM votes GROUP BY vote")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("votes table counts %v, want %v", got, want)
	}
}

// TestFoldDoesNotWait: while one transaction folds, another's fold returns at once and leaves
// the parts for later; a writer never waits for a fold.
func TestFoldDoesNotWait(t *testing.T) {
	s, dsn := newTestStore(t)
	ctx := context.Background()
	mustRecordVotes(t, s, []voting.Vote{{VoterID: "v1", Option: "a", At: voting.Now()}})
	tx, err := mustConnect(t, dsn).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT fold_vote_counts()"); err != nil {
		t.Fatal(err)
	}
	mustRecordVotes(t, s, []voting.Vote{{VoterID: "v2", Option: "a", At: voting.Now()}})
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := mustConnect(t, dsn)
	if _, err := c.Exec(fctx, "SELECT fold_vote_counts()"); err != nil {
		t.Fatalf("a fold while another folds: %v (it waited)", err)
	}
	if n := countDeltas(t, dsn); n == 0 {
		t.Error("the second fold folded while the first held the fold")
	}
	wantCounts(t, s, map[string]int64{"a": 2})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT fold_vote_counts()"); err != nil {
		t.Fatal(err)
	}
	if n := countDeltas(t, dsn); n != 0 {
		t.Errorf("%d parts waiting after the fold, want 0", n)
	}
	wantCounts(t, s, map[string]int64{"a": 2})
}

// TestUpgradeToCountDeltas migrates a database at migration 002, with votes and a read-only
// role granted SELECT on vote_counts as docs/reliability.md says: after 003 the counts are the
// same, and the role still reads them (now from the view).
func TestUpgradeToCountDeltas(t *testing.T) {
	dsn := newTestSchema(t)
	ctx := context.Background()
	c := mustConnect(t, dsn)
	ms, err := migrations.Load(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, schemaMigrationsSQL); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version > 2 {
			break
		}
		if _, err := c.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("migration %d: %v", m.Version, err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, "INSERT INTO votes (id, vote, voted_at) VALUES ('x1', 'a', now()), ('x2', 'a', now()), ('x3', 'b', now())"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	reader := "reader_" + hex.EncodeToString(b)
	if _, err := c.Exec(ctx, "CREATE ROLE "+reader); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The schema is dropped after this (cleanups run last first): the grants go first.
		ctx := context.Background()
		if _, err := c.Exec(ctx, "DROP OWNED BY "+reader+"; DROP ROLE "+reader); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	if _, err := c.Exec(ctx, "GRANT USAGE ON SCHEMA "+schemaOf(t, dsn)+" TO "+reader+"; GRANT SELECT ON vote_counts, tally_trace TO "+reader); err != nil {
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
	mustRecordVotes(t, s, []voting.Vote{{VoterID: "x3", Option: "a", At: voting.Now()}})
	wantCounts(t, s, map[string]int64{"a": 3})

	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+reader); err != nil {
		t.Fatal(err)
	}
	got, err := queryCounts(ctx, tx.Conn(), "SELECT option, count FROM vote_counts WHERE count <> 0")
	if err != nil {
		t.Fatalf("the read-only role reading vote_counts after the upgrade: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(map[string]int64{"a": 3}) {
		t.Errorf("the read-only role reads %v, want a:3", got)
	}
	// Migration 004's worker_status too, for the result page's line on counting.
	if _, err := tx.Exec(ctx, "SELECT worker FROM worker_status LIMIT 0"); err != nil {
		t.Errorf("the read-only role reading worker_status after the upgrade: %v", err)
	}
}

// schemaOf returns the schema a test URL's search_path names.
func schemaOf(t *testing.T, dsn string) string {
	t.Helper()
	var schema string
	if err := mustConnect(t, dsn).QueryRow(context.Background(), "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	return schema
}
