package result

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/sqlitestore"
	"github.com/votingapp/voting/internal/voting"
)

func TestAssess(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name     string
		total    int64
		statuses []voting.WorkerStatus
		err      error
		want     pipeline
	}{
		{"statuses not readable", 3, nil, errors.New("permission denied"),
			pipeline{pipelineUnknown, "Whether counting is up to date is not known here: the result service cannot read the workers' status (its log says why)."}},
		{"nothing, nobody", 0, nil, nil,
			pipeline{pipelineEmpty, "Nothing has been counted yet, and no worker has reported to this database: is a worker running, and on the same database as this page?"}},
		{"votes, no worker reports", 5, nil, nil,
			pipeline{pipelineUnknown, "Whether counting is up to date is not known here: no worker reports its status to this database (a worker of an older version?)."}},
		{"one worker, idle", 5, []voting.WorkerStatus{{Worker: "w", Seen: s, Recorded: 10 * time.Minute, Backlog: 0}}, nil,
			pipeline{pipelineOK, "Counting is up to date (1 worker counting)."}},
		{"two workers, busy", 5, []voting.WorkerStatus{{Worker: "w1", Seen: s, Recorded: s, Backlog: 400}, {Worker: "w2", Seen: 2 * s, Recorded: -1, Backlog: 380}}, nil,
			pipeline{pipelineOK, "Counting is up to date (2 workers counting)."}},
		{"a gone worker does not count", 5, []voting.WorkerStatus{{Worker: "old", Seen: time.Hour}, {Worker: "w", Seen: s, Recorded: s}}, nil,
			pipeline{pipelineOK, "Counting is up to date (1 worker counting)."}},
		{"stalled", 5, []voting.WorkerStatus{{Worker: "w", Seen: s, Recorded: 3 * time.Minute, Backlog: 12}}, nil,
			pipeline{pipelineStalled, "No vote has been recorded for 3 minutes, and 12 votes are waiting in the queue: the workers are running but not recording (is the database refusing them?)."}},
		{"stalled since start", 5, []voting.WorkerStatus{{Worker: "w", Seen: s, Recorded: -1, Backlog: 7}}, nil,
			pipeline{pipelineStalled, "No vote has been recorded since they started, and 7 votes are waiting in the queue: the workers are running but not recording (is the database refusing them?)."}},
		{"no worker, votes waiting", 5, []voting.WorkerStatus{{Worker: "w", Seen: 5 * time.Minute, Recorded: 6 * time.Minute, Backlog: 12}}, nil,
			pipeline{pipelineNoWorker, "No worker has reported for 5 minutes, when 12 votes were waiting: new votes are not being counted. Is a worker running?"}},
		{"no worker, nothing waiting", 5, []voting.WorkerStatus{{Worker: "w", Seen: 45 * s, Backlog: 0}}, nil,
			pipeline{pipelineNoWorker, "No worker has reported for over 30s: new votes are not being counted. Is a worker running?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := assess(tc.total, tc.statuses, tc.err); got != tc.want {
				t.Errorf("assess = %+v\nwant     %+v", got, tc.want)
			}
		})
	}
}

// failingStore answers a tally until fail is set, then fails like a store that is gone.
type failingStore struct{ fail atomic.Bool }

func (f *failingStore) Tally(context.Context) (voting.Tally, error) {
	if f.fail.Load() {
		return voting.Tally{}, voting.ErrUnavailable
	}
	return voting.Tally{Counts: map[string]int64{"a": 2, "b": 1}}, nil
}

func (f *failingStore) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// TestStoreLostKeepsTheNumbers: when the store cannot be read, the clients keep the last
// numbers and are told they may be out of date.
func TestStoreLostKeepsTheNumbers(t *testing.T) {
	opts, _ := voting.ParseOptions("a=Cats,b=Dogs")
	st := &failingStore{}
	srv := serve(t, Config{Options: opts, PollInterval: 50 * time.Millisecond}, st)
	get := func() snapshot { return fetchSnapshot(t, srv) }
	deadline := time.Now().Add(5 * time.Second)
	for get().Total != 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st.fail.Store(true)
	var s snapshot
	for s = get(); s.Pipeline.State != pipelineStoreLost && time.Now().Before(deadline); s = get() {
		time.Sleep(20 * time.Millisecond)
	}
	if s.Pipeline.State != pipelineStoreLost || s.Total != 3 {
		t.Fatalf("with the store gone: %+v; want the last numbers (3) and state %s", s, pipelineStoreLost)
	}
	t.Logf("the page says: %s", s.Pipeline.Message)
}

// TestResultFaults: with result-push-stop on, new numbers do not reach /api/results but the
// page says a drill is on; off, they do. A worker's drill, reported with its status, shows in
// the snapshot.
func TestResultFaults(t *testing.T) {
	st, err := sqlitestore.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts, _ := voting.ParseOptions("a=Cats,b=Dogs")
	faults := fault.NewSet(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err := faults.Add(nil, Faults...); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, Config{Options: opts, PollInterval: 50 * time.Millisecond, Faults: faults}, st)
	ctx := context.Background()
	results := func() snapshot { return fetchSnapshot(t, srv) }
	wait := func(what string, ok func(snapshot) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for s := results(); !ok(s); s = results() {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v", what, s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	record := func(id string) {
		if err := st.Record(ctx, []voting.Vote{{VoterID: id, Option: "a", At: voting.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	record("v1")
	wait("the first vote", func(s snapshot) bool { return s.Total == 1 })

	if err := faults.Set(FaultPushStop, "true"); err != nil {
		t.Fatal(err)
	}
	record("v2")
	time.Sleep(300 * time.Millisecond) // six polls
	if s := results(); s.Total != 1 {
		t.Fatalf("with %s on, /api/results shows %d votes, want the 1 of before", FaultPushStop, s.Total)
	}
	if page := fetch(t, srv, "/"); !strings.Contains(page, "A drill is on: this page gets no new numbers until it ends") {
		t.Error("the page does not say the pushes are stopped")
	}
	if err := faults.Set(FaultPushStop, "false"); err != nil {
		t.Fatal(err)
	}
	wait("the second vote, once pushes resume", func(s snapshot) bool { return s.Total == 2 && len(s.Drills) == 0 })

	if err := st.ReportStatus(ctx, "worker-1", 0, 0, []string{"A drill is on in a worker: it has stopped taking votes from the queue."}); err != nil {
		t.Fatal(err)
	}
	record("v3")
	wait("the worker's drill", func(s snapshot) bool {
		return len(s.Drills) == 1 && s.Drills[0] == "A drill is on in a worker: it has stopped taking votes from the queue."
	})
}

// fetch GETs path of srv and returns the body.
func fetch(t *testing.T, srv *httptest.Server, path string) string {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// fetchSnapshot reads /api/results of srv; before the first tally, an empty snapshot.
func fetchSnapshot(t *testing.T, srv *httptest.Server) snapshot {
	t.Helper()
	var s snapshot
	_ = json.Unmarshal([]byte(fetch(t, srv, "/api/results")), &s)
	return s
}

// serve runs a result service of cfg on st, and its handler on a test server, until the test
// ends.
func serve(t *testing.T, cfg Config, st Store) *httptest.Server {
	t.Helper()
	svc, err := New(cfg, st, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go svc.Run(ctx)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return srv
}
