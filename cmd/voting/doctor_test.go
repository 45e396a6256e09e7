package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/votingapp/voting/internal/doctor"
	"github.com/votingapp/voting/internal/proctest"
)

// doctorJSON runs `voting doctor --json args...` as main would, logs each hop's line, and
// returns the exit code and the report.
func doctorJSON(t *testing.T, args ...string) (int, *doctor.Report) {
	t.Helper()
	var out, stderr strings.Builder
	code := run(context.Background(), append([]string{"voting", "doctor", "--json"}, args...), func(string) string { return "" }, &out, &stderr)
	var r doctor.Report
	if code != 2 {
		if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
			t.Fatalf("doctor --json: exit %d, %v:\n%s\n%s", code, err, &out, &stderr)
		}
	}
	for _, h := range r.Hops {
		if h.Status != doctor.Skipped {
			t.Logf("%-8s %-7s %s", h.Name, h.Status, h.Message)
		}
	}
	if stderr.Len() > 0 {
		t.Logf("stderr: %s", &stderr)
	}
	return code, &r
}

// doctorUntil runs doctorJSON until the hop's message holds want, for 10 s at most: a
// service that has just started says so until its first checks are done.
func doctorUntil(t *testing.T, name, want string, args ...string) (int, *doctor.Report) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, r := doctorJSON(t, args...)
		if strings.Contains(hop(t, r, name).Message, want) || time.Now().After(deadline) {
			return code, r
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hop returns the named hop of the report.
func hop(t *testing.T, r *doctor.Report, name string) doctor.Hop {
	t.Helper()
	for _, h := range r.Hops {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no hop %s in %+v", name, r)
	return doctor.Hop{}
}

// wantBroken checks doctor's exit code, the first broken hop, its cause, and parts of its
// sentence.
func wantBroken(t *testing.T, code int, r *doctor.Report, name string, cause doctor.Cause, parts ...string) {
	t.Helper()
	h := hop(t, r, name)
	if code != 1 || r.OK || r.FirstBroken != name || h.Status != doctor.Broken || h.Cause != cause {
		t.Fatalf("got exit %d, first broken %q, %s %s %q (%s); want exit 1 with %s first broken, cause %q",
			code, r.FirstBroken, name, h.Status, h.Cause, h.Message, name, cause)
	}
	for _, p := range parts {
		if !strings.Contains(h.Message, p) {
			t.Errorf("%s: %q lacks %q", name, h.Message, p)
		}
	}
}

func wantHealthy(t *testing.T, code int, r *doctor.Report, hops ...string) {
	t.Helper()
	if code != 0 || !r.OK {
		t.Fatalf("got exit %d, report %+v; want exit 0, every hop healthy", code, r)
	}
	for _, name := range hops {
		if h := hop(t, r, name); h.Status != doctor.OK {
			t.Errorf("%s: %s %s, want ok", name, h.Status, h.Message)
		}
	}
}

// TestDoctorAll: `voting all` on its embedded store has the vote and result URLs (and one
// admin port) to check; healthy, it exits 0. A vote URL on a closed port, a result URL whose
// name cannot resolve, and a usage error each get their answer.
func TestDoctorAll(t *testing.T) {
	app := startApp(t, nil, []string{"vote", "result", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)...)
	app.waitReady()
	if code := postVote(t, app.url("vote"), "a"); code != http.StatusOK {
		t.Fatalf("vote: %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for getResults(t, app.url("result")).Total != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the vote was not counted within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	vote, result, admin := "--vote-url="+app.url("vote"), "--result-url="+app.url("result"), app.url("admin")

	code, r := doctorJSON(t, vote, result, "--vote-admin-url="+admin, "--worker-admin-url="+admin, "--result-admin-url="+admin)
	wantHealthy(t, code, r, doctor.HopVote, doctor.HopWorker, doctor.HopResult)
	if h := hop(t, r, doctor.HopRedis); h.Status != doctor.Skipped {
		t.Errorf("redis without --redis-url: %s, want skipped", h.Status)
	}

	// The text, as people read it.
	var out strings.Builder
	if code := run(context.Background(), []string{"voting", "doctor", vote, result}, func(string) string { return "" }, &out, &out); code != 0 {
		t.Fatalf("doctor: exit %d\n%s", code, &out)
	}
	t.Logf("voting doctor:\n%s", &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "vote      ok       "+app.url("vote")+" answers: the voting page offers a (Cats), b (Dogs)") ||
		!strings.HasPrefix(lines[4], "result    ok       "+app.url("result")+" answers: 1 vote counted") ||
		lines[5] != "healthy: every hop checked is ok (vote, result; not checked: redis, worker, postgres)" {
		t.Errorf("voting doctor printed:\n%s", &out)
	}

	closed := closedAddr(t)
	code, r = doctorJSON(t, "--vote-url=http://"+closed, result)
	wantBroken(t, code, r, doctor.HopVote, doctor.CauseRefused, "the connection to "+closed+" was refused: nothing listens on that port; start the vote service, or fix the host or port in --vote-url")

	code, r = doctorJSON(t, vote, "--result-url=http://result.voting.invalid:8081")
	wantBroken(t, code, r, doctor.HopResult, doctor.CauseDNS, "the host name result.voting.invalid does not resolve (DNS: no such host)", "--result-url")

	code, _ = doctorJSON(t, "--vote-url=localhost:8080")
	if code != 2 {
		t.Errorf("a vote URL without a scheme: exit %d, want 2", code)
	}
}

// TestDoctorAllServers: `voting all` on Redis and PostgreSQL is checked hop by hop like the
// split services, its one admin port standing for the three services'.
func TestDoctorAllServers(t *testing.T) {
	s := newTestServers(t)
	app := startApp(t, nil, []string{"vote", "result", "admin"}, append(append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...), s.flags()...)...)
	app.waitReady()
	admin := app.url("admin")
	args := append([]string{"--vote-url=" + app.url("vote"), "--result-url=" + app.url("result"), "--vote-admin-url=" + admin,
		"--worker-admin-url=" + admin, "--result-admin-url=" + admin, "--sample=500ms"}, s.flags()...)
	// Before the first vote, Redis lists no worker in the group: that is no fault.
	code, r := doctorJSON(t, args...)
	wantHealthy(t, code, r, doctor.HopVote, doctor.HopRedis, doctor.HopWorker, doctor.HopPostgres, doctor.HopResult)
	if h := hop(t, r, doctor.HopWorker); !strings.Contains(h.Message, "no worker has taken a vote yet, and none waits") {
		t.Errorf("worker before the first vote: %s", h.Message)
	}
	if code := postVote(t, app.url("vote"), "a"); code != http.StatusOK {
		t.Fatalf("vote: %d", code)
	}
	code, r = doctorUntil(t, doctor.HopPostgres, "1 vote counted", args...)
	wantHealthy(t, code, r, doctor.HopVote, doctor.HopRedis, doctor.HopWorker, doctor.HopPostgres, doctor.HopResult)
	if h := hop(t, r, doctor.HopWorker); !strings.Contains(h.Message, "1 consumer, one seen by Redis") {
		t.Errorf("worker after a vote: %s", h.Message)
	}
}

// TestDoctorSplitServices: the split services on Redis and PostgreSQL, healthy (exit 0),
// then each hop broken on purpose: dead letters, an unmigrated schema, a database that does
// not exist, a wrong Redis password, a closed Redis port, a vote service without Redis, a
// result service without PostgreSQL, a stream no worker reads, a backlog growing after the
// worker stopped, and no worker seen within the claim timeout; a new worker makes it healthy
// again.
func TestDoctorSplitServices(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	var out strings.Builder
	if code := run(ctx, []string{"voting", "migrate", "--postgres-url=" + s.postgresURL}, func(string) string { return "" }, &out, &out); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, &out)
	}
	startWorker := func() *testApp {
		return startApp(t, nil, []string{"admin"}, append([]string{"worker", "--admin-addr=127.0.0.1:0"}, s.flags()...)...)
	}
	w := startWorker()
	v := startApp(t, nil, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[0], s.flags()[2], voterKeyFlag(t))
	r := startApp(t, nil, []string{"result", "admin"}, "result", "--result-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[1])
	for _, a := range []*testApp{w, v, r} {
		a.waitReady()
	}
	for range 3 {
		if code := postVote(t, v.url("vote"), "b"); code != http.StatusOK {
			t.Fatalf("vote: %d", code)
		}
	}
	// every hop, with the worker's admin port; extra flags come last and win.
	every := func(w *testApp, extra ...string) []string {
		args := append([]string{"--vote-url=" + v.url("vote"), "--result-url=" + r.url("result"), "--vote-admin-url=" + v.url("admin"),
			"--worker-admin-url=" + w.url("admin"), "--result-admin-url=" + r.url("admin"), "--sample=1s"}, s.flags()...)
		return append(args, extra...)
	}
	all := every(w)
	with := func(extra ...string) []string { return every(w, extra...) }

	// Healthy, once the worker has recorded the three votes.
	code, rep := doctorUntil(t, doctor.HopPostgres, "3 votes counted", all...)
	wantHealthy(t, code, rep, doctor.HopVote, doctor.HopRedis, doctor.HopWorker, doctor.HopPostgres, doctor.HopResult)
	if h := hop(t, rep, doctor.HopPostgres); !strings.Contains(h.Message, "3 votes counted") {
		t.Errorf("postgres: %s, want the 3 votes counted", h.Message)
	}

	// Dead letters present.
	s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.stream + ":dead", Values: []any{"id", "1-1", "body", "not json", "reason", "undecodable", "consumer", "w"}})
	code, rep = doctorJSON(t, with("--sample=0")...)
	wantBroken(t, code, rep, doctor.HopWorker, doctor.CauseDeadLetters, "1 dead letter in "+s.stream+":dead", "redis-cli -h 127.0.0.1 -p ", "XRANGE "+s.stream+":dead - + COUNT 10")
	s.rdb.Del(ctx, s.stream+":dead")

	// Schema not migrated: an empty schema.
	empty := randomName("doctor_empty_")
	db, err := pgx.Connect(ctx, s.postgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+empty); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec(context.Background(), "DROP SCHEMA "+empty+" CASCADE") })
	code, rep = doctorJSON(t, with("--sample=0", "--postgres-url="+withQuery(t, s.postgresURL, "search_path", empty))...)
	wantBroken(t, code, rep, doctor.HopPostgres, doctor.CauseNotMigrated, "the schema is not migrated: schema \""+empty+"\"", "run `voting migrate")

	// A database that does not exist.
	u, _ := url.Parse(s.postgresURL)
	u.Path = "/doctor_no_such_db"
	code, rep = doctorJSON(t, with("--sample=0", "--postgres-url="+u.String())...)
	wantBroken(t, code, rep, doctor.HopPostgres, doctor.CauseNoDatabase, `database "doctor_no_such_db" does not exist`)

	// Redis authentication failed: a user with a password, and a URL with another.
	user := randomName("doctor-")
	if err := s.rdb.Do(ctx, "ACL", "SETUSER", user, "on", ">right", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.rdb.Do(context.Background(), "ACL", "DELUSER", user) })
	ru, _ := url.Parse(s.redisURL)
	ru.User = url.UserPassword(user, "wrong")
	code, rep = doctorJSON(t, with("--sample=0", "--redis-url="+ru.String())...)
	wantBroken(t, code, rep, doctor.HopRedis, doctor.CauseAuth, "refused the password of --redis-url (authentication failed: WRONGPASS")

	// Redis refused.
	closed := closedAddr(t)
	code, rep = doctorJSON(t, with("--sample=0", "--redis-url=redis://"+closed+"/0")...)
	wantBroken(t, code, rep, doctor.HopRedis, doctor.CauseRefused, "the connection to "+closed+" was refused", "start Redis")

	// A vote service whose Redis is down: its page answers, its /readyz names Redis.
	v2 := startApp(t, nil, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--redis-url=redis://"+closed+"/0", voterKeyFlag(t))
	code, rep = doctorUntil(t, doctor.HopVote, "redis: ", "--vote-url="+v2.url("vote"), "--vote-admin-url="+v2.url("admin"), "--result-url=")
	wantBroken(t, code, rep, doctor.HopVote, doctor.CauseNotReady, "the vote service answers but is not ready: its /readyz says redis: ", "connection refused")

	// A result service whose PostgreSQL is down: /api/results answers 503.
	r2 := startApp(t, nil, []string{"result", "admin"}, "result", "--result-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--postgres-url=postgres://voting@"+closed+"/voting?sslmode=disable")
	code, rep = doctorUntil(t, doctor.HopResult, "postgres: ", "--vote-url=", "--result-url="+r2.url("result"), "--result-admin-url="+r2.url("admin"))
	wantBroken(t, code, rep, doctor.HopResult, doctor.CauseNoTally, "/api/results answered 503: the result service has not read the tally yet", "its /readyz says postgres: ")

	// No consumer in the group: a vote service on a stream no worker reads.
	lonely := randomName("doctor-lonely-")
	t.Cleanup(func() { s.rdb.Del(context.Background(), lonely, lonely+":dead") })
	v3 := startApp(t, nil, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[0], "--stream="+lonely, voterKeyFlag(t))
	if code := postVote(t, v3.url("vote"), "a"); code != http.StatusOK {
		t.Fatalf("vote: %d", code)
	}
	code, rep = doctorJSON(t, "--vote-url="+v3.url("vote"), "--result-url=", s.flags()[0], "--stream="+lonely, "--sample=0")
	wantBroken(t, code, rep, doctor.HopWorker, doctor.CauseNoConsumer, "no consumer in group \"workers\" of stream \""+lonely+"\" (1 vote waiting)", "start a worker")

	// Backlog growing: the worker stopped, votes keep coming.
	if code := w.stop(); code != 0 {
		t.Fatalf("worker: exit %d", code)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				http.PostForm(v.url("vote")+"/", url.Values{"vote": {"a"}})
			}
		}
	})
	code, rep = doctorJSON(t, "--vote-url="+v.url("vote"), "--result-url="+r.url("result"), s.flags()[0], s.flags()[2], "--sample=1s")
	close(stop)
	wg.Wait()
	wantBroken(t, code, rep, doctor.HopWorker, doctor.CauseBacklog, "the backlog is growing: stream \""+s.stream+"\" grew from ", "and no worker took any")

	// No worker seen within the claim timeout.
	time.Sleep(1100 * time.Millisecond)
	code, rep = doctorJSON(t, s.flags()[0], s.flags()[2], "--vote-url=", "--result-url=", "--claim-timeout=1s", "--sample=0")
	wantBroken(t, code, rep, doctor.HopWorker, doctor.CauseNoConsumer, "no worker seen for ", "longer than --claim-timeout 1s, with ", "votes waiting untaken")

	// A worker again: the backlog drains and every hop is healthy.
	w = startWorker()
	w.waitReady()
	all = every(w)
	deadline := time.Now().Add(15 * time.Second)
	for code, rep = doctorJSON(t, all...); code != 0 && time.Now().Before(deadline); code, rep = doctorJSON(t, all...) {
		time.Sleep(200 * time.Millisecond)
	}
	wantHealthy(t, code, rep, doctor.HopVote, doctor.HopRedis, doctor.HopWorker, doctor.HopPostgres, doctor.HopResult)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	return proctest.FreeAddr(t)
}

func withQuery(t *testing.T, raw, k, v string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}
