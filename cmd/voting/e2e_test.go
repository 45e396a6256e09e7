package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// testServers gives a test its own Redis stream and PostgreSQL schema on the throwaway
// servers, removed at cleanup, and returns the flags that point the app at them.
type testServers struct {
	redisURL, postgresURL, stream string
	appName                       string // the app's application_name in pg_stat_activity
	rdb                           *redis.Client
}

func newTestServers(t *testing.T) *testServers {
	t.Helper()
	rurl := votingtest.RequireServer(t, "VOTING_TEST_REDIS_URL")
	purl := votingtest.RequireServer(t, "VOTING_TEST_POSTGRES_URL")
	ctx := context.Background()

	schema := randomName("e2e_")
	conn, err := pgx.Connect(ctx, purl)
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	u, err := url.Parse(purl)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()

	opt, err := redis.ParseURL(rurl)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	s := &testServers{redisURL: rurl, postgresURL: u.String(), stream: randomName("e2e-votes-"), appName: schema, rdb: rdb}
	t.Cleanup(func() {
		rdb.Del(context.Background(), s.stream, s.stream+":dead")
		rdb.Close()
	})
	return s
}

func (s *testServers) flags() []string {
	return []string{"--redis-url=" + s.redisURL, "--postgres-url=" + s.postgresURL, "--stream=" + s.stream}
}

// TestAllEmbedded runs `voting all` with nothing installed, casts the seed votes as the
// original's seed does, sees them on a WebSocket and in /api/results, and sees them again
// after a restart.
func TestAllEmbedded(t *testing.T) {
	args := append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)
	testSeedAndRestart(t, args)
}

// TestAllServers runs `voting all` on Redis and PostgreSQL.
func TestAllServers(t *testing.T) {
	s := newTestServers(t)
	args := append(append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...), s.flags()...)
	testSeedAndRestart(t, args)
}

func testSeedAndRestart(t *testing.T, args []string) {
	app := startApp(t, nil, []string{"vote", "result", "admin"}, args...)
	app.waitReady()
	read := dialResults(t, app.url("result"))
	if first := read(func(voting.Result) bool { return true }, 5*time.Second); first.Total != 0 {
		t.Fatalf("snapshot on connect: got %+v, want no votes", first)
	}
	if body := get(t, app.url("result")+"/"); !strings.Contains(body, "No votes yet") {
		t.Errorf("result page before any vote does not say %q", "No votes yet")
	}
	seed(t, app.url("vote"))
	checkSeeded(t, "websocket", read(total(3000), 30*time.Second))
	checkSeeded(t, "/api/results", getResults(t, app.url("result")))
	if code := app.stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; logs:\n%s", code, app.logs)
	}

	again := startApp(t, nil, []string{"vote", "result", "admin"}, args...)
	again.waitReady()
	checkSeeded(t, "after a restart", getResults(t, again.url("result")))

	// Votes accepted just before SIGTERM are recorded: the worker finishes its batch, and
	// the in-process queue is drained into the store before the process exits.
	rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: again.url("vote"), Votes: 500, Concurrency: 20,
		Weights: []loadgen.Weight{{Option: "b", Weight: 1}}}, nil)
	if err != nil || rep.Accepted != 500 {
		t.Fatalf("cast 500: %+v %v", rep, err)
	}
	if code := again.stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; logs:\n%s", code, again.logs)
	}
	third := startApp(t, nil, []string{"vote", "result", "admin"}, args...)
	third.waitReady()
	read = dialResults(t, third.url("result"))
	if r := read(total(3500), 20*time.Second); r.Options[1].Count != 1500 {
		t.Fatalf("after SIGTERM right after 500 more votes for Dogs: got %+v, want 2000 Cats and 1500 Dogs", r)
	}
}

// TestSplitServices runs migrate, then vote, worker and result as separate processes would,
// casts the seed, and puts a malformed message in the stream: it goes to the dead letters
// and the worker goes on.
func TestSplitServices(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	var out strings.Builder
	if code := run(ctx, append([]string{"voting", "migrate"}, s.flags()[1]), os.Getenv, &out, &out); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, &out)
	}
	w := startApp(t, nil, []string{"admin"}, append([]string{"worker", "--admin-addr=127.0.0.1:0"}, s.flags()...)...)
	v := startApp(t, nil, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[0], s.flags()[2], voterKeyFlag(t))
	r := startApp(t, nil, []string{"result", "admin"}, "result", "--result-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[1])
	for _, a := range []*testApp{w, v, r} {
		a.waitReady()
	}
	read := dialResults(t, r.url("result"))

	// A message that is not a vote, put on the stream by something else.
	if err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.stream, Values: map[string]any{"vote": "not json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	seed(t, v.url("vote"))
	checkSeeded(t, "websocket", read(total(3000), 30*time.Second))

	dead, err := s.rdb.XRange(ctx, s.stream+":dead", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Values["reason"] == "" || !strings.Contains(fmt.Sprint(dead[0].Values), "not json") {
		t.Fatalf("dead letters: got %v, want the one malformed message with a reason", dead)
	}
	// The worker acknowledges right after the commit that the result page already shows.
	deadline := time.Now().Add(5 * time.Second)
	for {
		pending, err := s.rdb.XPending(ctx, s.stream, "workers").Result()
		if err != nil {
			t.Fatal(err)
		}
		if pending.Count == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d votes still pending after they were counted, want 0", pending.Count)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The metrics say what was done: 3000 accepted, 3000 processed, the malformed message
	// dead-lettered as undecodable, nothing refused by the store, and a bad vote rejected.
	if code := postVote(t, v.url("vote"), "zzz"); code != http.StatusBadRequest {
		t.Errorf("vote for an unknown option: got %d, want 400", code)
	}
	for _, m := range []struct {
		app  *testApp
		name string
		want float64
	}{
		{v, `voting_votes_accepted_total{option="a"}`, 2000},
		{v, `voting_votes_accepted_total{option="b"}`, 1000},
		{v, `voting_votes_rejected_total{reason="invalid"}`, 1},
		{v, `voting_queue_publish_errors_total`, 0},
		{w, `voting_votes_processed_total`, 3000},
		{w, `voting_votes_dead_lettered_total{reason="undecodable"}`, 1},
		{w, `voting_votes_dead_lettered_total{reason="store_refused"}`, 0},
		{w, `voting_queue_length`, 0},
		{w, `voting_queue_dead_letters`, 1},
		{r, `voting_websocket_clients`, 1},
		{r, `voting_dependency_up{dependency="postgres"}`, 1},
	} {
		if got := metricValue(t, m.app, m.name); got != m.want {
			t.Errorf("%s = %v, want %v", m.name, got, m.want)
		}
	}
	if got := metricValue(t, r, "voting_vote_to_push_seconds_count"); got < 1 {
		t.Errorf("voting_vote_to_push_seconds_count = %v, want at least one push measured", got)
	}

	for _, a := range []*testApp{v, r, w} {
		if code := a.stop(); code != 0 {
			t.Errorf("exit code %d, want 0; logs:\n%s", code, a.logs)
		}
	}
}

// metricValue scrapes the app's /metrics and returns the value of the series written exactly
// as name (with its labels in the exposition's order).
func metricValue(t *testing.T, a *testApp, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(get(t, a.url("admin")+"/metrics"), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no metric %s in the scrape of %s", name, a.url("admin"))
	return 0
}

// postVote casts one vote as the page's form does and returns the answer's status.
func postVote(t *testing.T, voteURL, option string) int {
	t.Helper()
	resp, err := http.PostForm(voteURL+"/", url.Values{"vote": {option}})
	if err != nil {
		t.Fatalf("POST %s: %v", voteURL, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestServicesNeedTheirURLs: the split services refuse to start without their servers, and
// say which flag is missing.
func TestServicesNeedTheirURLs(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"vote"}, "--redis-url (or VOTING_REDIS_URL) is required"},
		{[]string{"vote", "--redis-url=redis://x"}, "--voter-key-file (or VOTING_VOTER_KEY_FILE) is required"},
		{[]string{"worker", "--postgres-url=postgres://x"}, "--redis-url (or VOTING_REDIS_URL) is required"},
		{[]string{"worker", "--redis-url=redis://x"}, "--postgres-url (or VOTING_POSTGRES_URL) is required"},
		{[]string{"result"}, "--postgres-url (or VOTING_POSTGRES_URL) is required"},
		{[]string{"migrate"}, "--postgres-url (or VOTING_POSTGRES_URL) is required"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			code := run(context.Background(), append([]string{"voting"}, tt.args...), func(string) string { return "" }, io.Discard, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("got exit %d and %q, want exit 1 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}

// TestPositionalArguments: healthcheck takes exactly its URL; every other command takes no
// argument after its flags, and says so (a stray word is usually a misspelt flag).
func TestPositionalArguments(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"healthcheck"}, 2, "Usage: voting healthcheck"},
		{[]string{"healthcheck", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"}, 2, "Usage: voting healthcheck"},
		{[]string{"version", "now"}, 1, `unexpected arguments: ["now"]`},
		{[]string{"migrate", "--postgres-url=postgres://x", "up"}, 1, `unexpected arguments: ["up"]`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			code := run(context.Background(), append([]string{"voting"}, tt.args...), func(string) string { return "" }, io.Discard, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("got exit %d and %q, want exit %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestConfigFromEnvironment: every flag has its VOTING_ variable, secrets can come from
// files, the command line wins, and the original's OPTION_A/OPTION_B still name the options.
func TestConfigFromEnvironment(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "redis-url")
	if err := os.WriteFile(secret, []byte("redis://from-file:6379/0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"VOTING_REDIS_URL_FILE": secret,
		"VOTING_BATCH_SIZE":     "42",
		"VOTING_VOTE_ADDR":      ":1234",
		"OPTION_A":              "Tabs",
		"OPTION_B":              "Spaces",
	}
	parseAll := func(args []string) (*allConfig, error) {
		var c allConfig
		return &c, parseConfig("all", "", &cmdEnv{getenv: func(k string) string { return env[k] }, stderr: io.Discard}, args, &c)
	}
	c, err := parseAll([]string{"--vote-addr=:5678"})
	if err != nil {
		t.Fatal(err)
	}
	if c.redis.url != "redis://from-file:6379/0" || c.worker.cfg.BatchSize != 42 || c.vote.addr != ":5678" {
		t.Errorf("got redis %q, batch %d, vote addr %q; want the file's URL, 42 from the environment, :5678 from the command line", c.redis.url, c.worker.cfg.BatchSize, c.vote.addr)
	}
	if got := c.vote.cfg.Options.String(); got != "a=Tabs,b=Spaces" {
		t.Errorf("options: got %q, want a=Tabs,b=Spaces", got)
	}

	env["VOTING_OPTIONS"] = "x=Red,y=Green,z=Blue"
	if c, err = parseAll(nil); err != nil {
		t.Fatal(err)
	}
	if got := c.vote.cfg.Options.String(); got != "x=Red,y=Green,z=Blue" || c.result.cfg.Options.String() != got {
		t.Errorf("options: got %q (result %q), want VOTING_OPTIONS to win over OPTION_A/OPTION_B, for both", got, c.result.cfg.Options)
	}

	env["VOTING_BATCH_SIZE"] = "many"
	_, err = parseAll(nil)
	if err == nil || !strings.Contains(err.Error(), "VOTING_BATCH_SIZE") {
		t.Errorf("bad VOTING_BATCH_SIZE: got %v, want an error naming the variable", err)
	}
}

// TestConfigReportsEveryProblem: a command line with several mistakes is refused with all of
// them in one message, not the first only.
func TestConfigReportsEveryProblem(t *testing.T) {
	var stderr strings.Builder
	code := run(context.Background(), []string{"voting", "vote", "--trusted-proxies=10.0.0.0/33", "--rate-limit=-1", "--rate-burst=0"},
		func(string) string { return "" }, io.Discard, &stderr)
	for _, want := range []string{"--trusted-proxies: ", "--redis-url (or VOTING_REDIS_URL) is required", "--voter-key-file (or VOTING_VOTER_KEY_FILE) is required", "rate limit -1 must not be negative"} {
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("exit %d, stderr %q: want exit 1 and %q", code, stderr.String(), want)
		}
	}
	stderr.Reset()
	code = run(context.Background(), []string{"voting", "all", "--batch-size=-1", "--max-deliveries=-2", "--max-websockets=-3", "--rate-limit=1", "--rate-burst=0"},
		func(string) string { return "" }, io.Discard, &stderr)
	for _, want := range []string{"batch size -1", "--max-deliveries -2", "WebSocket client limits -3", "rate burst 0"} {
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("exit %d, stderr %q: want exit 1 and %q", code, stderr.String(), want)
		}
	}
}

// TestHelpListsEveryFlagWithItsVariable checks -h documents each flag with its variable and
// default.
func TestHelpListsEveryFlagWithItsVariable(t *testing.T) {
	var stderr strings.Builder
	if code := run(context.Background(), []string{"voting", "all", "-h"}, func(string) string { return "" }, io.Discard, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--redis-url", "$VOTING_REDIS_URL, or a file named by $VOTING_REDIS_URL_FILE", "--postgres-url", "--data-dir", "$VOTING_DATA_DIR", `(default "data")`,
		"--admin-addr", `(default ":9090")`, "--options list", `(default "a=Cats,b=Dogs")`, "--vote-addr", "--result-addr", "--batch-size", "--shutdown-timeout", "--drain-delay"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("voting all -h does not mention %q:\n%s", want, &stderr)
		}
	}
}

// TestHealthcheckAndReadiness: readiness is false while a server is missing, the logs say
// which, and `voting healthcheck` follows it.
func TestHealthcheckAndReadiness(t *testing.T) {
	// Port 1 on loopback: nothing listens there, connections are refused at once.
	app := startApp(t, nil, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--redis-url=redis://127.0.0.1:1/0", voterKeyFlag(t))
	deadline := time.Now().Add(10 * time.Second)
	for !app.logs.contains(`"dependency not ready"`, `"dependency":"redis"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line saying redis is not ready; logs:\n%s", app.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(app.url("admin") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "redis") {
		t.Errorf("/readyz: got %s %s, want 503 naming redis", resp.Status, body)
	}
	var out strings.Builder
	if code := run(context.Background(), []string{"voting", "healthcheck", app.url("admin") + "/readyz"}, os.Getenv, &out, &out); code != 1 {
		t.Errorf("healthcheck of a not-ready service: exit %d, want 1", code)
	}
	if code := run(context.Background(), []string{"voting", "healthcheck", app.url("admin") + "/livez"}, os.Getenv, &out, &out); code != 0 {
		t.Errorf("healthcheck of /livez: exit %d, want 0: %s", code, &out)
	}
	// A vote while Redis is down is refused with 503, and nothing claims it was taken.
	if code := postVote(t, app.url("vote"), "a"); code != http.StatusServiceUnavailable {
		t.Errorf("vote while Redis is down: got %d, want 503", code)
	}
}

// TestREADMEDocumentsEveryFlag keeps the README's configuration table true to the code.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"vote", "worker", "result", "all", "migrate"} {
		var stderr strings.Builder
		run(context.Background(), []string{"voting", cmd, "-h"}, func(string) string { return "" }, io.Discard, &stderr)
		for _, line := range strings.Split(stderr.String(), "\n") {
			if name, ok := strings.CutPrefix(strings.TrimSpace(line), "--"); ok {
				name, _, _ = strings.Cut(name, " ")
				if !strings.Contains(string(readme), "| `--"+name+"` |") {
					t.Errorf("README's configuration table lacks --%s (voting %s)", name, cmd)
				}
			}
		}
	}
}

// TestCrossSiteVoteRefused: a browser's POST from another site is refused; clients that send
// no Origin (curl, ab) are not.
func TestCrossSiteVoteRefused(t *testing.T) {
	app := startApp(t, nil, []string{"vote", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)...)
	app.waitReady()
	req, _ := http.NewRequest(http.MethodPost, app.url("vote")+"/", strings.NewReader("vote=a"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: got %s, want 403", resp.Status)
	}
	if code := postVote(t, app.url("vote"), "a"); code != http.StatusOK {
		t.Errorf("POST without Origin: got %d, want 200", code)
	}
}

// TestResultReconnectsToPostgres: every connection of the app to PostgreSQL is killed; the
// app reconnects by itself and the WebSocket shows the next votes without a reload.
func TestResultReconnectsToPostgres(t *testing.T) {
	s := newTestServers(t)
	app := startApp(t, nil, []string{"vote", "result", "admin"}, append(append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...), s.flags()...)...)
	app.waitReady()
	read := dialResults(t, app.url("result"))
	cast := func(n int) {
		rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: app.url("vote"), Votes: n, Concurrency: 5,
			Weights: []loadgen.Weight{{Option: "a", Weight: 1}}}, nil)
		if err != nil || rep.Accepted != n {
			t.Fatalf("cast %d: %+v %v", n, rep, err)
		}
	}
	cast(10)
	read(total(10), 10*time.Second)

	conn, err := pgx.Connect(context.Background(), votingtest.RequireServer(t, "VOTING_TEST_POSTGRES_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var killed int
	err = conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1`, s.appName).Scan(&killed)
	if err != nil || killed == 0 {
		t.Fatalf("terminate the app's connections: killed %d, %v", killed, err)
	}
	t.Logf("killed %d connections", killed)
	cast(10)
	read(total(20), 20*time.Second)
}

// TestStartupLogsEachConfiguration: a process logs its effective configuration once, at
// start, each service's in its own group.
func TestStartupLogsEachConfiguration(t *testing.T) {
	a := startApp(t, nil, []string{"vote", "result", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir(), "--rate-limit=3", "--batch-size=7"}, loopback...)...)
	a.stop()
	var starts []map[string]any
	for _, line := range strings.Split(a.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "starting" {
			starts = append(starts, m)
		}
	}
	if len(starts) != 1 {
		t.Fatalf("%d \"starting\" lines, want 1:\n%s", len(starts), a.logs)
	}
	got := fmt.Sprint(starts[0])
	for _, want := range []string{"options:a=Cats,b=Dogs", "rate_limit:3", "max_websockets:10000", "batch_size:7", "queue:in-process", "store:sqlite in "} {
		if !strings.Contains(got, want) {
			t.Errorf("the start line %s does not show %s", got, want)
		}
	}
}
