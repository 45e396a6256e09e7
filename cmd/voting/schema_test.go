package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSchemaMismatchIsNotReady: when the votes table stops matching (a column renamed away:
// SQLSTATE 42703), `voting all` on PostgreSQL keeps the vote in the queue, dead-letters
// nothing, and turns not ready with /readyz naming the mismatch; once the column is back the
// vote is recorded and the process is ready again.
func TestSchemaMismatchIsNotReady(t *testing.T) {
	s := newTestServers(t)
	app := startApp(t, nil, []string{"vote", "result", "admin"}, append(append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...), s.flags()...)...)
	app.waitReady()
	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.postgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	readyz := func() (int, string) {
		resp, err := http.Get(app.url("admin") + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReadyz := func(want int, parts ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body := readyz()
			ok := code == want
			for _, p := range parts {
				ok = ok && strings.Contains(body, p)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz: %d %s; want %d with %q; logs:\n%s", code, body, want, parts, app.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	exec("ALTER TABLE votes RENAME COLUMN voted_at TO voted_at_gone")
	if code := postVote(t, app.url("vote"), "a"); code != http.StatusOK {
		t.Fatalf("vote: %d, want 200 (the queue takes it)", code)
	}
	waitReadyz(http.StatusServiceUnavailable, `"postgres"`, "does not match", "42703")
	if n, err := s.rdb.XLen(ctx, s.stream+":dead").Result(); err != nil || n != 0 {
		t.Fatalf("dead letters: %d, %v; want none (the vote is not at fault)", n, err)
	}
	if got := metricValue(t, app, `voting_votes_dead_lettered_total{reason="store_refused"}`); got != 0 {
		t.Fatalf("store_refused dead letters: %v, want 0", got)
	}

	exec("ALTER TABLE votes RENAME COLUMN voted_at_gone TO voted_at")
	waitReadyz(http.StatusOK)
	deadline := time.Now().Add(10 * time.Second)
	for r := getResults(t, app.url("result")); r.Total != 1; r = getResults(t, app.url("result")) {
		if time.Now().After(deadline) {
			t.Fatalf("after the column came back: %+v, want the vote counted", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
