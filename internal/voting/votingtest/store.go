package votingtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/voting"
)

// storeTimeout bounds each store subtest, so that a deadlock fails the test instead of
// hanging the run.
const storeTimeout = 2 * time.Minute

// TestStore runs the store contract against the stores that newStore returns. Each subtest
// gets a fresh store.
func TestStore(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("Empty", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		wantTally(ctx, t, s, map[string]int64{})
		if v, ok, err := s.VoteOf(ctx, "nobody"); err != nil || ok {
			t.Fatalf("VoteOf(nobody) = %v, %v, %v; want no vote", v, ok, err)
		}
		for _, ids := range [][]string{nil, {"nobody"}} {
			if vs, err := s.VotesOf(ctx, ids); err != nil || len(vs) != 0 {
				t.Fatalf("VotesOf(%q) = %v, %v; want no votes", ids, vs, err)
			}
		}
		mustRecord(ctx, t, s) // an empty batch is fine
		wantTally(ctx, t, s, map[string]int64{})
	})

	t.Run("FirstVoteCounted", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		v := vote("v1", "a", 0)
		mustRecord(ctx, t, s, v)
		wantTally(ctx, t, s, map[string]int64{"a": 1})
		wantVote(ctx, t, s, v)
	})

	t.Run("NewestVoteTime", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		wantNewest := func(want time.Time) {
			t.Helper()
			tally, err := s.Tally(ctx)
			if err != nil {
				t.Fatalf("Tally: %v", err)
			}
			if !tally.Newest.Equal(want) {
				t.Fatalf("Tally.Newest = %v, want %v", tally.Newest, want)
			}
		}
		wantNewest(time.Time{})
		mustRecord(ctx, t, s, vote("v1", "a", 2))
		wantNewest(vote("v1", "a", 2).At)
		mustRecord(ctx, t, s, vote("v2", "b", 5), vote("v3", "a", 3))
		wantNewest(vote("v2", "b", 5).At)
		// An older vote of a new voter raises a count but not the newest time; a
		// redelivered vote changes nothing.
		mustRecord(ctx, t, s, vote("v4", "a", 1), vote("v2", "b", 5))
		wantNewest(vote("v2", "b", 5).At)
		mustRecord(ctx, t, s, vote("v1", "b", 9)) // a voter changes their vote
		wantNewest(vote("v1", "b", 9).At)

		// The trace context of the newest traced vote comes with the tally.
		traced := func(voter string, n int, tp string) voting.Vote {
			v := vote(voter, "a", n)
			v.TraceParent = tp
			return v
		}
		const tp1, tp2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		mustRecord(ctx, t, s, traced("v5", 11, tp2), traced("v6", 10, tp1), vote("v7", "a", 12))
		tally, err := s.Tally(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tally.NewestTrace != tp2 {
			t.Fatalf("Tally.NewestTrace = %q, want the newest traced vote's %q", tally.NewestTrace, tp2)
		}
	})

	t.Run("NewestWins", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		mustRecord(ctx, t, s, vote("v1", "a", 0), vote("v2", "a", 0))
		mustRecord(ctx, t, s, vote("v1", "b", 1))
		wantTally(ctx, t, s, map[string]int64{"a": 1, "b": 1})
		wantVote(ctx, t, s, vote("v1", "b", 1))
	})

	t.Run("InvalidVotesRejected", func(t *testing.T) {
		// A batch with one invalid vote is refused whole, before anything is written, with
		// the validation error and not ErrUnavailable: the worker must not retry it forever.
		ctx, s := storeSetup(t, newStore)
		for _, tt := range []struct {
			bad  voting.Vote
			want error
		}{
			{voting.Vote{VoterID: "bad voter", Option: "a", At: at(1)}, voting.ErrInvalidVoter},
			{voting.Vote{VoterID: "v2", Option: "not valid", At: at(1)}, voting.ErrInvalidOption},
			{voting.Vote{VoterID: "v2", Option: "a"}, voting.ErrInvalidTime},
		} {
			err := s.Record(ctx, []voting.Vote{vote("ok", "a", 0), tt.bad})
			if !errors.Is(err, tt.want) || errors.Is(err, voting.ErrUnavailable) {
				t.Errorf("Record with %+v: %v, want %v and not ErrUnavailable", tt.bad, err, tt.want)
			}
		}
		wantTally(ctx, t, s, map[string]int64{})
		if v, ok, err := s.VoteOf(ctx, "ok"); err != nil || ok {
			t.Fatalf("VoteOf(ok) after refused batches = %v, %v, %v; want no vote", v, ok, err)
		}
	})

	t.Run("OlderVoteChangesNothing", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		mustRecord(ctx, t, s, vote("v1", "b", 10))
		mustRecord(ctx, t, s, vote("v1", "a", 9))
		wantTally(ctx, t, s, map[string]int64{"b": 1})
		wantVote(ctx, t, s, vote("v1", "b", 10))
	})

	t.Run("RedeliveryChangesNothing", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		v := vote("v1", "a", 5)
		mustRecord(ctx, t, s, v)
		mustRecord(ctx, t, s, v)
		mustRecord(ctx, t, s, v, v)
		wantTally(ctx, t, s, map[string]int64{"a": 1})
		wantVote(ctx, t, s, v)
	})

	t.Run("SubMicrosecondTimesAreTruncated", func(t *testing.T) {
		// Stores keep TimePrecision; a vote must compare the same after a round trip.
		ctx, s := storeSetup(t, newStore)
		v := vote("v1", "a", 5)
		v.At = v.At.Add(999 * time.Nanosecond)
		mustRecord(ctx, t, s, v)
		mustRecord(ctx, t, s, vote("v1", "b", 5)) // same microsecond, "b" > "a": wins
		wantVote(ctx, t, s, vote("v1", "b", 5))
	})

	t.Run("BatchKeepsNewestInAnyOrder", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		rng := newRand(t)
		// One voter's history, with a tie at the newest time.
		history := []voting.Vote{
			vote("", "a", 1), vote("", "c", 2), vote("", "b", 3), vote("", "a", 4),
			vote("", "B", 4), vote("", "b", 4), vote("", "a", 4),
		}
		want := map[string]int64{}
		for i := range 40 {
			id := fmt.Sprintf("voter-%d", i)
			vs := make([]voting.Vote, len(history))
			for j, v := range history {
				v.VoterID = id
				vs[j] = v
			}
			rng.Shuffle(len(vs), func(a, b int) { vs[a], vs[b] = vs[b], vs[a] })
			if i%2 == 0 {
				mustRecord(ctx, t, s, vs...) // all in one batch
			} else {
				for _, batch := range randomBatches(rng, vs, 3) {
					mustRecord(ctx, t, s, batch...)
				}
			}
			newest := newestOf(vs)
			if newest.Option != "b" || !newest.At.Equal(at(4)) {
				t.Fatalf("test model: newest of %v is %v, want b at 4", vs, newest)
			}
			wantVote(ctx, t, s, newest)
			want["b"]++
		}
		wantTally(ctx, t, s, want)
	})

	t.Run("EqualTimesTieBreakByOption", func(t *testing.T) {
		// Bytewise: "a" > "B" > "A" > "9" > "-"; a database collation like en_US would
		// order them differently.
		ctx, s := storeSetup(t, newStore)
		options := []string{"a", "B", "A", "9", "-", "_"}
		rng := newRand(t)
		for i := range 20 {
			id := fmt.Sprintf("tie-%d", i)
			vs := make([]voting.Vote, len(options))
			for j, o := range options {
				vs[j] = vote(id, o, 7)
			}
			rng.Shuffle(len(vs), func(a, b int) { vs[a], vs[b] = vs[b], vs[a] })
			if i%2 == 0 {
				mustRecord(ctx, t, s, vs...)
			} else {
				for _, v := range vs {
					mustRecord(ctx, t, s, v)
				}
			}
			wantVote(ctx, t, s, vote(id, "a", 7))
		}
		wantTally(ctx, t, s, map[string]int64{"a": 20})
	})

	t.Run("RandomBatchesMatchModel", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		rng := newRand(t)
		votes := randomVotes(rng, 10000, 3000)
		for _, batch := range randomBatches(rng, votes, 700) {
			mustRecord(ctx, t, s, batch...)
		}
		checkModel(ctx, t, s, votes)
	})

	t.Run("ConcurrentRecord", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		rng := newRand(t)
		votes := randomVotes(rng, 8000, 1000) // overlapping voters across goroutines
		const workers = 4
		parts := make([][]voting.Vote, workers)
		for i, v := range votes {
			parts[i%workers] = append(parts[i%workers], v)
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for i, part := range parts {
			batches := randomBatches(rand.New(rand.NewPCG(uint64(i), 1)), part, 300)
			wg.Go(func() {
				for _, b := range batches {
					if err := s.Record(ctx, b); err != nil {
						errs <- fmt.Errorf("worker %d: %w", i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		checkModel(ctx, t, s, votes)
	})

	t.Run("NoSignalWithoutChange", func(t *testing.T) {
		// A Record that changes no stored vote (a redelivery, an older vote) does not
		// signal: every watcher would read the tally for nothing.
		ctx, s := storeSetup(t, newStore)
		w := s.Watch(ctx)
		v := vote("v1", "b", 5)
		mustRecord(ctx, t, s, v)
		waitSignal(ctx, t, w, "after the first vote")
		waitQuiet(ctx, t, w)
		mustRecord(ctx, t, s, v)
		mustRecord(ctx, t, s, v, vote("v1", "a", 4))
		select {
		case <-w:
			t.Fatal("signal after records that changed no stored vote")
		case <-time.After(500 * time.Millisecond):
		}
	})

	t.Run("WorkerStatus", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		if st, err := s.WorkerStatuses(ctx); err != nil || len(st) != 0 {
			t.Fatalf("WorkerStatuses of a new store = %v, %v; want none", st, err)
		}
		if err := s.ReportStatus(ctx, "w2", -1, -1, []string{"A drill is on.", "Another one."}); err != nil { // started, nothing recorded, queue unknown
			t.Fatal(err)
		}
		if err := s.ReportStatus(ctx, "w1", 2*time.Second, 5, nil); err != nil {
			t.Fatal(err)
		}
		near := func(got, want time.Duration) bool { return got >= want-time.Second && got <= want+time.Second }
		st, err := s.WorkerStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 2 || st[0].Worker != "w1" || !near(st[0].Seen, 0) || !near(st[0].Recorded, 2*time.Second) || st[0].Backlog != 5 ||
			st[1].Worker != "w2" || st[1].Recorded >= 0 || st[1].Backlog >= 0 || st[0].Drills != nil || fmt.Sprint(st[1].Drills) != "[A drill is on. Another one.]" {
			t.Fatalf("WorkerStatuses = %+v; want w1 seen now, recorded 2s ago, backlog 5, no drill, and w2 with neither and two drills", st)
		}
		// A report without a record keeps the last one; the backlog is always the latest.
		if err := s.ReportStatus(ctx, "w1", -1, 0, nil); err != nil {
			t.Fatal(err)
		}
		if st, err = s.WorkerStatuses(ctx); err != nil {
			t.Fatal(err)
		}
		if !near(st[0].Recorded, 2*time.Second) || st[0].Backlog != 0 {
			t.Fatalf("after a report without a record: %+v; want recorded still 2s ago, backlog 0", st[0])
		}
	})

	t.Run("Watch", func(t *testing.T) {
		ctx, s := storeSetup(t, newStore)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w := s.Watch(wctx)
		other := s.Watch(ctx) // each watcher gets its own channel

		// A watcher may get a signal when nothing changed, but must get one after a
		// change: that is also how we know that it is listening.
		mustRecord(ctx, t, s, vote("v0", "a", 0))
		waitSignal(ctx, t, w, "after the first vote")
		waitSignal(ctx, t, other, "on the second watcher")
		waitQuiet(ctx, t, w)

		mustRecord(ctx, t, s, vote("v0", "b", 1))
		waitSignal(ctx, t, w, "after a changed vote")
		waitQuiet(ctx, t, w)

		// Many changes while nobody reads: Record never blocks on the watcher, and the
		// signals coalesce into one pending value.
		for i := range 10 {
			mustRecord(ctx, t, s, vote(fmt.Sprintf("v%d", i+1), "a", 2))
		}
		waitPending(ctx, t, w)
		time.Sleep(time.Second) // late deliveries would land now, and must coalesce
		waitSignal(ctx, t, w, "after ten changes")
		select {
		case <-w:
			t.Fatal("got a second signal for changes that were all made before the first was read")
		case <-time.After(300 * time.Millisecond):
		}

		cancel()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case _, ok := <-w:
				if !ok {
					return
				}
			case <-deadline:
				t.Fatal("watch channel not closed 10s after its context was canceled")
			}
		}
	})
}

// storeSetup returns a fresh store and a context that bounds the subtest.
func storeSetup(t *testing.T, newStore func(t *testing.T) Store) (context.Context, Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	t.Cleanup(cancel)
	return ctx, newStore(t)
}

// base is the time of the test votes; at(n) is n microseconds later, so that neighbouring
// times differ by exactly TimePrecision.
var base = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

func at(n int) time.Time { return base.Add(time.Duration(n) * voting.TimePrecision) }

func vote(voter, option string, n int) voting.Vote {
	return voting.Vote{VoterID: voter, Option: option, At: at(n)}
}

func newRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0))
}

// randomVotes returns n votes of the given number of voters for a few options, with times
// drawn from a small range so that a voter's votes often share a time.
func randomVotes(rng *rand.Rand, n, voters int) []voting.Vote {
	options := []string{"a", "b", "c", "B"}
	votes := make([]voting.Vote, n)
	for i := range votes {
		votes[i] = vote(fmt.Sprintf("voter-%d", rng.IntN(voters)), options[rng.IntN(len(options))], rng.IntN(5))
	}
	return votes
}

// randomBatches shuffles a copy of votes and cuts it into batches of 1 to max votes.
func randomBatches(rng *rand.Rand, votes []voting.Vote, max int) [][]voting.Vote {
	vs := append([]voting.Vote(nil), votes...)
	rng.Shuffle(len(vs), func(a, b int) { vs[a], vs[b] = vs[b], vs[a] })
	var batches [][]voting.Vote
	for len(vs) > 0 {
		n := min(1+rng.IntN(max), len(vs))
		batches = append(batches, vs[:n])
		vs = vs[n:]
	}
	return batches
}

// newestOf returns the vote that must win among one voter's votes, by voting.Vote.Newer.
func newestOf(vs []voting.Vote) voting.Vote {
	newest := vs[0]
	for _, v := range vs[1:] {
		if v.Newer(newest) {
			newest = v
		}
	}
	return newest
}

// checkModel compares the store with the newest vote per voter computed here.
func checkModel(ctx context.Context, t *testing.T, s Store, votes []voting.Vote) {
	t.Helper()
	byVoter := map[string][]voting.Vote{}
	for _, v := range votes {
		byVoter[v.VoterID] = append(byVoter[v.VoterID], v)
	}
	// VotesOf reads them all at once (more than one query's worth in SQLite), with ids that
	// have no vote and one id twice mixed in.
	ids := []string{"nobody", "voter-none"}
	for id := range byVoter {
		ids = append(ids, id, "none-"+id)
	}
	ids = append(ids, ids[2])
	stored, err := s.VotesOf(ctx, ids)
	if err != nil {
		t.Fatalf("VotesOf(%d ids): %v", len(ids), err)
	}
	if len(stored) != len(byVoter) {
		t.Errorf("VotesOf(%d ids) found %d votes, want %d (one per voter)", len(ids), len(stored), len(byVoter))
	}
	want := map[string]int64{}
	for _, vs := range byVoter {
		newest := newestOf(vs)
		if got := stored[newest.VoterID]; got.VoterID != newest.VoterID || got.Option != newest.Option || !got.At.Equal(newest.At) {
			t.Errorf("VotesOf: vote of %s = %+v, want %+v", newest.VoterID, got, newest)
		}
		want[newest.Option]++
		got, ok, err := s.VoteOf(ctx, newest.VoterID)
		if err != nil {
			t.Fatalf("VoteOf(%s): %v", newest.VoterID, err)
		}
		if !ok || got.Option != newest.Option || !got.At.Equal(newest.At) {
			t.Errorf("stored vote of %s = %v (found %v), want %v", newest.VoterID, got, ok, newest)
		}
	}
	wantTally(ctx, t, s, want)
}

func mustRecord(ctx context.Context, t *testing.T, s Store, votes ...voting.Vote) {
	t.Helper()
	if err := s.Record(ctx, votes); err != nil {
		t.Fatalf("Record(%d votes): %v", len(votes), err)
	}
}

// TestCountTriggers checks that the counts a store keeps beside its votes table follow every
// change to the table, also those made with plain SQL by an operator or another app. It runs
// each statement of steps with exec, then compares s's tally with countVotes, which must
// count the table itself (SELECT vote, count(*) FROM votes GROUP BY vote).
func TestCountTriggers(t *testing.T, s voting.Tallier, steps []string, exec func(ctx context.Context, stmt string) error,
	countVotes func(ctx context.Context) (map[string]int64, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	for _, step := range steps {
		if err := exec(ctx, step); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		want, err := countVotes(ctx)
		if err != nil {
			t.Fatalf("count the votes after %s: %v", step, err)
		}
		t.Logf("after %s: %v", step, want)
		wantTally(ctx, t, s, want)
	}
}

// wantTally checks the tally; options with a count of 0 may be present or not.
func wantTally(ctx context.Context, t *testing.T, s voting.Tallier, want map[string]int64) {
	t.Helper()
	tally, err := s.Tally(ctx)
	if err != nil {
		t.Fatalf("Tally: %v", err)
	}
	if tally.Counts == nil {
		t.Fatal("Tally returned a nil map")
	}
	got := maps.Clone(tally.Counts)
	maps.DeleteFunc(got, func(_ string, n int64) bool { return n == 0 })
	if !maps.Equal(got, want) {
		t.Fatalf("Tally = %v, want %v", got, want)
	}
}

func wantVote(ctx context.Context, t *testing.T, s Store, want voting.Vote) {
	t.Helper()
	got, ok, err := s.VoteOf(ctx, want.VoterID)
	if err != nil {
		t.Fatalf("VoteOf(%s): %v", want.VoterID, err)
	}
	if !ok {
		t.Fatalf("VoteOf(%s): no vote, want %v", want.VoterID, want)
	}
	if got.VoterID != want.VoterID || got.Option != want.Option || !got.At.Equal(want.At) {
		t.Fatalf("VoteOf(%s) = %+v, want %+v", want.VoterID, got, want)
	}
}

// waitSignal waits up to 10 seconds for a signal on w.
func waitSignal(ctx context.Context, t *testing.T, w <-chan struct{}, when string) {
	t.Helper()
	select {
	case _, ok := <-w:
		if !ok {
			t.Fatalf("watch channel closed, want a signal %s", when)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no watch signal %s within 10s", when)
	case <-ctx.Done():
		t.Fatalf("no watch signal %s: %v", when, ctx.Err())
	}
}

// waitQuiet drains w until it stays empty for 300ms, for the signals that a store may send
// when nothing changed.
func waitQuiet(ctx context.Context, t *testing.T, w <-chan struct{}) {
	t.Helper()
	for {
		select {
		case _, ok := <-w:
			if !ok {
				t.Fatal("watch channel closed early")
			}
		case <-time.After(300 * time.Millisecond):
			return
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// waitPending waits until a signal is pending on w, without taking it.
func waitPending(ctx context.Context, t *testing.T, w <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(w) == 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatal("no watch signal pending 10s after ten changes")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
