package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/votingapp/voting/internal/audit"
	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/voting"
)

// tamper changes a store behind the app's back, as an operator's SQL or a broken component
// would.
type tamper struct {
	delete func(t *testing.T, ids []string)
	insert func(t *testing.T, id, option string)
}

// TestAuditEmbedded: `voting loadgen --verify` and `voting audit` against `voting all` on
// SQLite.
func TestAuditEmbedded(t *testing.T) {
	dir := t.TempDir()
	// The result service re-reads the tally every 100 ms: SQLite signals only this process's
	// writes, and the test's own SQL must show in /api/results within the audits' wait.
	app := startApp(t, nil, []string{"vote", "result", "admin"}, append([]string{"all", "--data-dir=" + dir, "--poll-interval=100ms"}, loopback...)...)
	app.waitReady()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "voting.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	testAudit(t, app.url("vote"), app.url("result"), []string{"--data-dir=" + dir}, tamper{
		delete: func(t *testing.T, ids []string) {
			for _, id := range ids {
				if _, err := db.Exec("DELETE FROM votes WHERE id = ?", id); err != nil {
					t.Fatal(err)
				}
			}
		},
		insert: func(t *testing.T, id, option string) {
			if _, err := db.Exec("INSERT INTO votes (id, vote, voted_at) VALUES (?, ?, ?)", id, option, time.Now().UnixMicro()); err != nil {
				t.Fatal(err)
			}
		},
	})

	// --json: one object, loadgen's report (what the cluster checks read) with the audit in
	// it. The run's own votes are judged, whatever was tampered with before.
	code, stdout, stderr := runVoting("loadgen", "--url="+app.url("vote"), "--votes=20", "--json", "--verify", "--result-url="+app.url("result"), "--data-dir="+dir)
	var rep struct {
		Sent, Accepted int
		Audit          *audit.Outcome
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 || rep.Sent != 20 || rep.Accepted != 20 || rep.Audit == nil ||
		!rep.Audit.OK || rep.Audit.Counted != 20 || !rep.Audit.Settled {
		t.Errorf("loadgen --verify --json: exit %d, %+v (%v); want exit 0, 20 sent and accepted, an audit with 20 counted:\n%s%s", code, rep, err, stdout, stderr)
	}
}

// TestAuditSplitServices: the same against migrate, vote, worker and result as separate
// services on Redis and PostgreSQL.
func TestAuditSplitServices(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	var out strings.Builder
	if code := run(ctx, append([]string{"voting", "migrate"}, s.flags()[1]), func(string) string { return "" }, &out, &out); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, &out)
	}
	w := startApp(t, nil, []string{"admin"}, append([]string{"worker", "--admin-addr=127.0.0.1:0"}, s.flags()...)...)
	v := startApp(t, nil, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[0], s.flags()[2], voterKeyFlag(t))
	r := startApp(t, nil, []string{"result", "admin"}, "result", "--result-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[1])
	for _, a := range []*testApp{w, v, r} {
		a.waitReady()
	}
	conn, err := pgx.Connect(ctx, s.postgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	testAudit(t, v.url("vote"), r.url("result"), []string{"--postgres-url=" + s.postgresURL}, tamper{
		delete: func(t *testing.T, ids []string) {
			if _, err := conn.Exec(ctx, "DELETE FROM votes WHERE id = ANY($1)", ids); err != nil {
				t.Fatal(err)
			}
		},
		insert: func(t *testing.T, id, option string) {
			if _, err := conn.Exec(ctx, "INSERT INTO votes (id, vote, voted_at) VALUES ($1, $2, now())", id, option); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// auditLine is the audit's verdict line.
var auditLine = regexp.MustCompile(`(?m)^cast (\d+), accepted (\d+), counted (\d+), lost (\d+), extra (\d+)$`)

// testAudit casts votes on a deployment that already holds some, from new and returning
// voters, a quarter of them for an option the poll does not have (refused), and verifies
// them; then removes some accepted votes and adds some for refused voters and a voter never
// cast for, and audits again, from the store and from /api/results alone.
func testAudit(t *testing.T, voteURL, resultURL string, store []string, change tamper) {
	// Votes from before: the audit must not take them for the run's.
	if rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: voteURL, Votes: 50, Concurrency: 5,
		Weights: []loadgen.Weight{{Option: "a", Weight: 1}, {Option: "b", Weight: 1}}}, nil); err != nil || rep.Accepted != 50 {
		t.Fatalf("cast 50 before: %+v %v", rep, err)
	}
	waitTotal(t, resultURL, 50)

	voters := filepath.Join(t.TempDir(), "voters")
	code, stdout, stderr := runVoting(append([]string{"loadgen", "--url=" + voteURL, "--votes=400", "--concurrency=20", "--reuse=0.3",
		"--weights=a=2,b=1,zzz=1", "--quiet", "--verify", "--result-url=" + resultURL, "--voters-out=" + voters}, store...)...)
	m := auditLine.FindStringSubmatch(stdout)
	if code != 0 || m == nil || m[1] != "400" || m[2] != m[3] || m[4] != "0" || m[5] != "0" {
		t.Fatalf("loadgen --verify: exit %d, want 0 and cast 400, all accepted counted, lost 0, extra 0:\n%s%s", code, stdout, stderr)
	}
	accepted := m[2]
	if !strings.Contains(stdout, "refused (must not count)") || strings.Contains(stdout, " 0 refused") {
		t.Errorf("loadgen --verify does not report the refused votes:\n%s", stdout)
	}
	told, err := audit.ReadFile(voters)
	if err != nil {
		t.Fatal(err)
	}
	if told.Baseline == nil || told.Baseline.Total != 50 || fmt.Sprint(len(told.Final)) != accepted {
		t.Fatalf("voters file: baseline %+v, %d accepted voters; want the 50 votes from before, %s voters", told.Baseline, len(told.Final), accepted)
	}

	// check runs `voting audit` on the file and checks its verdict line.
	check := func(what string, wantCode int, want string, extra ...string) string {
		t.Helper()
		args := append([]string{"audit", "--voters=" + voters, "--result-url=" + resultURL, "--verify-timeout=1500ms"}, extra...)
		code, stdout, stderr := runVoting(args...)
		if m := auditLine.FindString(stdout); code != wantCode || m != want || !strings.HasPrefix(stdout, m) {
			t.Fatalf("%s: exit %d, first line %q; want exit %d and %q:\n%s%s", what, code, m, wantCode, want, stdout, stderr)
		}
		return stdout
	}
	n := len(told.Final)
	clean := fmt.Sprintf("cast 400, accepted %d, counted %d, lost 0, extra 0", n, n)
	check("clean, from the store", 0, clean, store...)
	if out := check("clean, from /api/results", 0, clean); !strings.Contains(out, "from /api/results only") {
		t.Errorf("the /api/results-only audit does not say what it cannot tell:\n%s", out)
	}

	// Three accepted votes for a disappear from the store.
	var gone []string
	for _, v := range slices.Sorted(maps.Keys(told.Final)) {
		if told.Final[v] == "a" && len(told.Unknown[v]) == 0 && len(told.Refused[v]) == 0 && len(gone) < 3 {
			gone = append(gone, v)
		}
	}
	change.delete(t, gone)
	lost := fmt.Sprintf("cast 400, accepted %d, counted %d, lost 3, extra 0", n, n-3)
	out := check("3 rows deleted, from the store", 1, lost, store...)
	for _, v := range gone {
		if want := "lost     voter " + v + ": accepted a; stored nothing\n"; !strings.Contains(out, want) {
			t.Errorf("the audit does not name %s as lost (%q):\n%s", v, want, out)
		}
	}
	check("3 rows deleted, from /api/results", 1, fmt.Sprintf("cast 400, accepted %d, counted %d, lost 3, extra 0", n, n-3))

	// Votes for b appear for two voters that were only refused, and one never cast for.
	var refused []string
	for _, v := range told.Voters() {
		if _, ok := told.Final[v]; !ok && len(told.Unknown[v]) == 0 && len(told.Refused[v]) > 0 && len(refused) < 2 {
			refused = append(refused, v)
		}
	}
	if len(refused) != 2 {
		t.Fatalf("%d voters only refused, want at least 2", len(refused))
	}
	for _, v := range append(slices.Clone(refused), "f00d0000000000000000000000000000") {
		change.insert(t, v, "b")
	}
	both := fmt.Sprintf("cast 400, accepted %d, counted %d, lost 3, extra 3", n, n-3)
	out = check("rows added for refused and unknown voters, from the store", 1, both, store...)
	for _, v := range refused {
		if want := "extra    voter " + v + ": refused zzz; stored b\n"; !strings.Contains(out, want) {
			t.Errorf("the audit does not name %s as extra (%q):\n%s", v, want, out)
		}
	}
	if want := "1 more (votes of voters the run never cast for"; !strings.Contains(out, want) {
		t.Errorf("the audit does not count the vote of a voter never cast for (%q):\n%s", want, out)
	}
	// From the totals alone, three votes moved from a to b: three lost, three extra.
	check("rows added, from /api/results", 1, fmt.Sprintf("cast 400, accepted %d, counted %d, lost 3, extra 3", n, n))

	code, stdout, _ = runVoting(append([]string{"audit", "--voters=" + voters, "--result-url=" + resultURL, "--verify-timeout=0", "--json"}, store...)...)
	var o audit.Outcome
	if err := json.Unmarshal([]byte(stdout), &o); err != nil || code != 1 || o.Lost != 3 || o.Extra != 3 || o.OK || len(o.Problems) != 6 {
		t.Errorf("--json: exit %d, %+v, %v; want exit 1, lost 3, extra 3 and 6 problems (3 voters lost, 2 extra, the totals 1 more): %s", code, o, err, stdout)
	}
}

// runVoting runs `voting args...` with an empty environment and returns its exit code and
// output.
func runVoting(args ...string) (int, string, string) {
	var stdout, stderr strings.Builder
	code := run(context.Background(), append([]string{"voting"}, args...), func(string) string { return "" }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// waitTotal waits until /api/results shows n votes.
func waitTotal(t *testing.T, resultURL string, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last voting.Result
	for time.Now().Before(deadline) {
		if last = getResults(t, resultURL); last.Total == n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/api/results: %+v, want a total of %d", last, n)
}

// TestAuditUsage: a command line the audit cannot work with is a usage error (exit 2) that
// says why; a deployment it cannot read is an error (exit 1).
func TestAuditUsage(t *testing.T) {
	dir := t.TempDir()
	noBaseline := filepath.Join(dir, "plain")
	if err := os.WriteFile(noBaseline, []byte("0123456789abcdef0123456789abcdef a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"audit", "--result-url=http://127.0.0.1:1"}, 2, "--voters is required"},
		{[]string{"audit", "--voters=" + noBaseline}, 2, "nothing to compare with"},
		{[]string{"audit", "--voters=" + noBaseline, "--result-url=http://127.0.0.1:1", "--others-vote"}, 2, "--others-vote needs --postgres-url or --data-dir"},
		{[]string{"audit", "--voters=" + noBaseline, "--result-url=http://127.0.0.1:1"}, 2, "has no baseline"},
		{[]string{"audit", "--voters=" + noBaseline, "--verify-timeout=-1s", "--data-dir=" + dir}, 2, "--verify-timeout -1s must not be negative"},
		{[]string{"audit", "--voters", noBaseline, "extra"}, 1, "unexpected arguments"},
		{[]string{"audit", "--voters=" + noBaseline, "--data-dir=" + filepath.Join(dir, "typo")}, 1, "no SQLite store in"},
		{[]string{"audit", "--voters=" + filepath.Join(dir, "missing"), "--data-dir=" + dir}, 1, "no such file"},
		{[]string{"loadgen", "--verify"}, 2, "--verify needs --result-url"},
		{[]string{"loadgen", "--verify", "--result-url=http://127.0.0.1:1", "--others-vote"}, 2, "--others-vote needs --postgres-url or --data-dir"},
		{[]string{"loadgen", "--verify", "--result-url=http://127.0.0.1:1"}, 1, "baseline: read /api/results"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, stderr := runVoting(tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("got exit %d and %q, want exit %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); !os.IsNotExist(err) {
		t.Errorf("auditing a mistyped --data-dir created it (%v)", err)
	}
}
