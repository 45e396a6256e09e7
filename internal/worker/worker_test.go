package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/sqlitestore"
	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/worker"
)

// flakyStore is a real store whose Record fails as told: the first failures calls with
// err, and any batch holding poison with a data error, after which the next
// outageOnRefusal calls (once) fail with err.
type flakyStore struct {
	*sqlitestore.Store
	failures        atomic.Int32
	err             error
	poison          string
	outageOnRefusal atomic.Int32
}

func (s *flakyStore) Record(ctx context.Context, votes []voting.Vote) error {
	if s.failures.Add(-1) >= 0 {
		return s.err
	}
	for _, v := range votes {
		if v.VoterID == s.poison {
			s.failures.Store(s.outageOnRefusal.Swap(0))
			return errors.New("value too long for type character varying(255)")
		}
	}
	return s.Store.Record(ctx, votes)
}

func setup(t *testing.T, st *flakyStore) (*memqueue.Queue, *prometheus.Registry, func() error) {
	t.Helper()
	lite, err := sqlitestore.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	st.Store = lite
	q := memqueue.New(memqueue.Config{})
	reg := prometheus.NewRegistry()
	qm := telemetry.NewQueueMetrics(reg)
	w, err := worker.New(worker.Config{BatchSize: 50, StopTimeout: time.Second, OnDeadLetter: qm.DeadLettered}, q.Consumer("w"), st, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("worker did not stop")
		}
	})
	t.Cleanup(func() { _ = stop() })
	return q, reg, stop
}

func publish(t *testing.T, q *memqueue.Queue, n int, voter func(i int) string) {
	t.Helper()
	at := voting.Now()
	for i := range n {
		v := voting.Vote{VoterID: voter(i), Option: []string{"a", "b"}[i%2], At: at.Add(time.Duration(i) * time.Microsecond)}
		if err := q.Publish(context.Background(), v); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tally(t *testing.T, st *flakyStore) map[string]int64 {
	t.Helper()
	c, err := st.Tally(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c.Counts
}

// TestStoreDownIsRetried: while the store is unavailable the worker retries the batch and
// dead-letters nothing; when it comes back every vote is recorded.
func TestStoreDownIsRetried(t *testing.T) {
	st := &flakyStore{err: fmt.Errorf("connect: %w", voting.ErrUnavailable)}
	st.failures.Store(3)
	q, reg, _ := setup(t, st)
	publish(t, q, 200, func(i int) string { return fmt.Sprintf("voter-%d", i) })
	waitFor(t, "200 votes recorded", func() bool { c := tally(t, st); return c["a"]+c["b"] == 200 })
	// A vote counts as processed once acknowledged, just after its commit.
	waitFor(t, "200 votes processed", func() bool { return counter(t, reg, "voting_votes_processed_total") == 200 })
	if got := len(q.DeadLetters(0)); got != 0 {
		t.Errorf("dead letters: got %d, want 0: an unavailable store is not the votes' fault", got)
	}
}

// TestRefusedVoteIsDeadLettered: a vote the store refuses for what it is goes to the dead
// letters alone; the rest of its batch is recorded.
func TestRefusedVoteIsDeadLettered(t *testing.T) {
	st := &flakyStore{poison: "voter-7"}
	q, reg, _ := setup(t, st)
	publish(t, q, 20, func(i int) string { return fmt.Sprintf("voter-%d", i) })
	waitFor(t, "19 votes recorded", func() bool { c := tally(t, st); return c["a"]+c["b"] == 19 })
	waitFor(t, "one dead letter", func() bool { return len(q.DeadLetters(0)) == 1 })
	if dl := q.DeadLetters(0)[0]; dl.Reason == "" {
		t.Errorf("dead letter without a reason: %+v", dl)
	}
	if got := counter(t, reg, "voting_votes_dead_lettered_total"); got != 1 {
		t.Errorf("dead-lettered metric: got %v, want 1", got)
	}
}

// TestOutageWhileRecordingOneByOne: when the store goes down while the votes of a refused
// batch are recorded one by one, the ones left are retried, not left with the worker.
func TestOutageWhileRecordingOneByOne(t *testing.T) {
	st := &flakyStore{poison: "voter-7", err: fmt.Errorf("connect: %w", voting.ErrUnavailable)}
	st.outageOnRefusal.Store(2)
	q, _, _ := setup(t, st)
	publish(t, q, 20, func(i int) string { return fmt.Sprintf("voter-%d", i) })
	waitFor(t, "19 votes recorded", func() bool { c := tally(t, st); return c["a"]+c["b"] == 19 })
	waitFor(t, "one dead letter", func() bool { return len(q.DeadLetters(0)) == 1 })
	waitFor(t, "an empty queue", func() bool { s, _ := q.Stats(context.Background()); return s.Length == 0 })
}

// TestStopFinishesTheBatch: a worker told to stop while the store is down keeps retrying for
// StopTimeout, then stops without acknowledging, so the votes stay in the queue.
func TestStopFinishesTheBatch(t *testing.T) {
	st := &flakyStore{err: fmt.Errorf("connect: %w", voting.ErrUnavailable)}
	st.failures.Store(1 << 20)
	q, _, stop := setup(t, st)
	// Three batches of 50: the worker holds more than one when told to stop, and the stop
	// timeout bounds them all together.
	publish(t, q, 150, func(i int) string { return fmt.Sprintf("voter-%d", i) })
	// Long enough for the backoff to grow past the stop timeout (0.1+0.2+0.4+0.8 s, then a
	// wait of 1.6 s): stopping must not sit that wait out.
	time.Sleep(1600 * time.Millisecond)
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stopping took %s, want about the 1s stop timeout", d)
	}
	// The stopped worker's consumer still holds the votes; they come back once its claim
	// times out, which the queue contract tests cover. Here: nothing was acknowledged.
	s, _ := q.Stats(context.Background())
	if s.Length != 150 {
		t.Fatalf("votes were acknowledged although never recorded: %+v, want all 150 left", s)
	}
}

// counter returns the value of a counter of the registry, summed over its labels.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestReportsStatus: the worker reports to the store, every StatusEvery, how many votes wait
// and when it last recorded some: while the store refuses every batch, votes wait and nothing
// is recorded; once it takes them, nothing waits and the last record is recent.
func TestReportsStatus(t *testing.T) {
	lite, err := sqlitestore.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	st := &flakyStore{Store: lite, err: voting.ErrUnavailable}
	st.failures.Store(1 << 30)
	q := memqueue.New(memqueue.Config{})
	cfg := worker.Config{BatchSize: 50, StopTimeout: time.Second, Instance: "worker-1", StatusEvery: 20 * time.Millisecond,
		Backlog: func(ctx context.Context) (int64, error) {
			s, err := q.Stats(ctx)
			return s.Length, err
		}}
	w, err := worker.New(cfg, q.Consumer("w"), st, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	publish(t, q, 120, func(i int) string { return fmt.Sprint("v", i) })
	status := func() voting.WorkerStatus {
		s, err := st.WorkerStatuses(context.Background())
		if err != nil || len(s) > 1 {
			t.Fatalf("WorkerStatuses = %v, %v; want the one worker", s, err)
		}
		if len(s) == 0 {
			return voting.WorkerStatus{} // not reported yet
		}
		return s[0]
	}
	waitFor(t, "a report of 120 votes waiting, none recorded", func() bool {
		s := status()
		return s.Worker == "worker-1" && s.Backlog == 120 && s.Recorded < 0
	})
	st.failures.Store(0)
	waitFor(t, "a report of nothing waiting, votes just recorded", func() bool {
		s := status()
		return s.Backlog == 0 && s.Recorded >= 0 && s.Recorded < 5*time.Second && s.Seen < 5*time.Second
	})
}

// TestWorkerFaults: stalled, the worker takes nothing and reports its drill; switched off, it
// records every vote; with exit-after, Run ends with an error once that many votes are
// recorded, and a worker started after it records the rest: nothing is lost.
func TestWorkerFaults(t *testing.T) {
	lite, err := sqlitestore.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	st := &flakyStore{Store: lite}
	q := memqueue.New(memqueue.Config{ClaimTimeout: 200 * time.Millisecond})
	faults := fault.NewSet(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err := faults.Add(fault.Flags{"worker-stall": "true"}, worker.Faults...); err != nil {
		t.Fatal(err)
	}
	// start runs a worker as its process does: when Run ends, its consumer is closed.
	start := func(name string) chan error {
		cfg := worker.Config{BatchSize: 10, StopTimeout: time.Second, Instance: name, StatusEvery: 20 * time.Millisecond, Faults: faults}
		c := q.Consumer(name)
		w, err := worker.New(cfg, c, st, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		done := make(chan error, 1)
		go func() {
			err := w.Run(ctx)
			cancel()
			c.Close()
			done <- err
		}()
		return done
	}
	done := start("w1")
	publish(t, q, 100, func(i int) string { return fmt.Sprint("v", i) })
	waitFor(t, "the stalled worker's drill in its status", func() bool {
		s, err := st.WorkerStatuses(context.Background())
		return err == nil && len(s) == 1 && fmt.Sprint(s[0].Drills) == "[A drill is on in a worker: it has stopped taking votes from the queue.]"
	})
	time.Sleep(200 * time.Millisecond)
	if n := tally(t, st); len(n) != 0 {
		t.Fatalf("a stalled worker recorded %v", n)
	}
	// Off, and exit after 35 votes: batches of 10 make it exit after the fourth.
	if err := faults.Set("worker-stall", "false"); err != nil {
		t.Fatal(err)
	}
	if err := faults.Set("worker-exit-after", "35"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "worker-exit-after=35") {
			t.Fatalf("Run after 35 votes with exit-after=35: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not exit")
	}
	if err := faults.Set("worker-exit-after", "0"); err != nil {
		t.Fatal(err)
	}
	start("w2") // what w1 held unacknowledged is delivered again after the claim timeout
	deadline := time.Now().Add(10 * time.Second)
	for n := tally(t, st); n["a"]+n["b"] != 100; n = tally(t, st) {
		if time.Now().After(deadline) {
			s, _ := q.Stats(context.Background())
			t.Fatalf("recorded %v of 100; queue %+v", n, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
