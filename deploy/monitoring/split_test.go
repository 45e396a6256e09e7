package monitoring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
)

// perProcess is which process exports which metric (docs/operations.md says the same per
// section). The dashboard's per-service rows and the alerts that combine series across jobs
// (queue gauges from vote and worker, accepted on vote against processed on worker) rely on it.
var perProcess = map[string][]string{
	"vote": {
		"voting_http_requests_total", "voting_http_request_duration_seconds",
		"voting_votes_accepted_total", "voting_votes_rejected_total", "voting_queue_publish_errors_total",
		"voting_queue_length", "voting_queue_pending", "voting_queue_oldest_pending_age_seconds", "voting_queue_dead_letters",
		"voting_queue_memory_bytes", "voting_queue_memory_limit_bytes",
	},
	"worker": {
		"voting_votes_processed_total", "voting_votes_dead_lettered_total",
		"voting_queue_length", "voting_queue_pending", "voting_queue_oldest_pending_age_seconds", "voting_queue_dead_letters",
		"voting_queue_memory_bytes", "voting_queue_memory_limit_bytes", "voting_store_write_duration_seconds", "voting_worker_batch_size", "voting_store_errors_total",
		"voting_vote_record_lag_seconds",
	},
	"result": {
		"voting_http_requests_total", "voting_http_request_duration_seconds",
		"voting_vote_to_push_seconds", "voting_websocket_clients", "voting_websocket_messages_sent_total",
		"voting_websocket_messages_dropped_total", "voting_websocket_clients_dropped_total",
		"voting_tally_errors_total", "voting_tally_updated_timestamp_seconds",
	},
}

// dependencies is the dependency label values of voting_dependency_up per process.
var dependencies = map[string][]string{
	"vote":   {"redis"},
	"worker": {"postgres", "redis"},
	"result": {"postgres", "tally"},
}

// TestSplitProcessesExposeTheirMetrics runs vote, worker and result as separate processes on
// Redis and PostgreSQL, as they run in Kubernetes, casts votes, and checks that each process
// exports its metrics, the ones every process exports, and its dependencies. It needs the
// servers of scripts/with-servers (VOTING_TEST_REDIS_URL, VOTING_TEST_POSTGRES_URL); without
// them it is skipped, except in CI, where that is a failure.
func TestSplitProcessesExposeTheirMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the app")
	}
	redisURL, pgURL := os.Getenv("VOTING_TEST_REDIS_URL"), os.Getenv("VOTING_TEST_POSTGRES_URL")
	if redisURL == "" || pgURL == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("VOTING_TEST_REDIS_URL and VOTING_TEST_POSTGRES_URL are not set: run the tests under scripts/with-servers")
		}
		t.Skip("no Redis and PostgreSQL: run under scripts/with-servers")
	}
	t.Parallel()
	pgURL = newDatabase(t, pgURL)
	stream := "monitoring-" + randomHex(4) // a stream of our own in a Redis others may share

	bin := buildApp(t)
	migrate := exec.Command(bin, "migrate", "--postgres-url="+pgURL)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("voting migrate: %v\n%s", err, out)
	}
	worker := startProcess(t, bin, "worker", 1, func(p []string) []string {
		return []string{"--redis-url=" + redisURL, "--postgres-url=" + pgURL, "--stream=" + stream, "--admin-addr=" + p[0]}
	})
	// vote will not start without the keys that sign voter ids: one of its own, as a
	// deployment's Secret would give it.
	keyFile := filepath.Join(t.TempDir(), "voter-key")
	if err := os.WriteFile(keyFile, []byte(randomHex(32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vote := startProcess(t, bin, "vote", 2, func(p []string) []string {
		return []string{"--redis-url=" + redisURL, "--voter-key-file=" + keyFile, "--stream=" + stream, "--vote-addr=" + p[0], "--admin-addr=" + p[1]}
	})
	result := startProcess(t, bin, "result", 2, func(p []string) []string {
		return []string{"--postgres-url=" + pgURL, "--result-addr=" + p[0], "--admin-addr=" + p[1]}
	})

	castVotes(t, "http://"+vote[0])
	waitFor(t, "the results to count both votes", func() bool {
		body, code := get(t, "http://"+result[0]+"/api/results")
		return code == 200 && strings.Contains(body, `"total":2`)
	})

	admins := map[string]string{"vote": vote[1], "worker": worker[0], "result": result[1]}
	for _, proc := range []string{"vote", "worker", "result"} {
		fams := scrape(t, "http://"+admins[proc])
		for _, name := range append([]string{"voting_build_info", "voting_dependency_up", "go_goroutines",
			"process_resident_memory_bytes", "process_cpu_seconds_total"}, perProcess[proc]...) {
			if _, ok := fams[name]; !ok {
				t.Errorf("voting %s does not export %s", proc, name)
			}
		}
		var deps []string
		for _, m := range fams["voting_dependency_up"].GetMetric() {
			deps = append(deps, labelValue(m, "dependency"))
			if m.GetGauge().GetValue() != 1 {
				t.Errorf("voting %s: voting_dependency_up{dependency=%q} = %v while ready", proc, labelValue(m, "dependency"), m.GetGauge().GetValue())
			}
		}
		slices.Sort(deps)
		if !slices.Equal(deps, dependencies[proc]) {
			t.Errorf("voting %s checks dependencies %v, want %v", proc, deps, dependencies[proc])
		}
		if proc == "worker" {
			if got := sumCounter(fams["voting_votes_processed_total"]); got < 2 {
				t.Errorf("worker recorded %v votes, want at least 2", got)
			}
		}
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sumCounter(f *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// newDatabase creates a database of its own in the server of the superuser URL (dropped when
// the test ends) and returns its URL, so the votes here never meet another test's.
func newDatabase(t *testing.T, superuserURL string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, superuserURL)
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	name := "monitoring_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, superuserURL)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(superuserURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
