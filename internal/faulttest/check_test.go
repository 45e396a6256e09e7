package faulttest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/loadgen"
)

// loadVotes is the size of each fault test's load: votes from new and returning voters.
const loadVotes = 20000

// load is a run of the load generator in the background.
type load struct {
	t    *testing.T
	done chan struct{}
	rep  *loadgen.Report
	err  error
	n    atomic.Int64 // votes answered so far

	mu      sync.Mutex
	samples []sample // answered votes over time, for bounds on what a crash may lose
}

type sample struct {
	at   time.Time
	done int
}

// startLoad casts votes at url: 40% of them by returning voters, never two of one voter at
// once (so the newest vote of each voter is unambiguous), each retried on a 5xx or a failed
// connection for up to a minute, as a person would press the button again.
func startLoad(t *testing.T, url string, votes int, tweak ...func(*loadgen.Config)) *load {
	t.Helper()
	cfg := loadgen.Config{
		URL: url, Votes: votes, Concurrency: 16, Reuse: 0.4,
		Weights: []loadgen.Weight{{Option: "a", Weight: 3}, {Option: "b", Weight: 2}},
		Retry:   time.Minute, SerialVoters: true, Timeout: 15 * time.Second,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	l := &load{t: t, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.rep, l.err = loadgen.Run(context.Background(), cfg, func(done int) {
			l.n.Store(int64(done))
			if done%50 == 0 {
				l.mu.Lock()
				l.samples = append(l.samples, sample{time.Now(), done})
				l.mu.Unlock()
			}
		})
	}()
	return l
}

// waitFor waits until at least n votes have been answered.
func (l *load) waitFor(n int) {
	l.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for l.n.Load() < int64(n) {
		select {
		case <-l.done:
			l.t.Fatalf("load ended after %d votes, before %d", l.n.Load(), n)
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("load: %d votes answered after 3m, waiting for %d", l.n.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answeredBetween returns how many votes were answered between from and to, rounded out to
// the samples around them.
func (l *load) answeredBetween(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	lo, hi := 0, int(l.n.Load())
	for _, s := range l.samples {
		if !s.at.After(from) {
			lo = s.done
		}
		if s.at.After(to) {
			hi = s.done
			break
		}
	}
	return hi - lo
}

// wait waits for the load to finish and returns its report.
func (l *load) wait() *loadgen.Report {
	l.t.Helper()
	select {
	case <-l.done:
	case <-time.After(5 * time.Minute):
		l.t.Fatalf("load not finished after 5m (%d answered)", l.n.Load())
	}
	if l.err != nil {
		l.t.Fatalf("load: %v", l.err)
	}
	r := l.rep
	l.t.Logf("load: %d sent, %d accepted, %d failed %v, %d retried, %.0f votes/s, p99 %v, unsure: %d returning voters, %d new; first error %q",
		r.Sent, r.Accepted, r.Failed, r.ByStatus, r.Retried, r.Rate, r.P99.Round(time.Millisecond), len(r.Unsure), r.UnsureNew, r.FirstError)
	return r
}

// drain waits until the stream is empty: every vote recorded and acknowledged (the queue
// deletes what is acknowledged), or dead-lettered.
func (sys *system) drain(timeout time.Duration) {
	t := sys.t
	t.Helper()
	rdb := sys.redis.client()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		n, err := rdb.XLen(ctx, sys.stream).Result()
		if err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			p, _ := rdb.XPending(ctx, sys.stream, "workers").Result()
			t.Fatalf("queue not drained after %v: %d in the stream (%v), pending %+v", timeout, n, err, p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// outcome is the comparison of the store with what the load generator was told.
type outcome struct {
	accepted int // 2xx votes
	voters   int // voters with an accepted vote
	missing  int // voters with an accepted vote and no row
	stale    int // voters whose row is not their newest vote (nor one whose outcome is unknown)
	unsure   int // voters whose row is a vote the load generator was not sure about
	extra    int // rows of voters the load generator never heard of
	dead     int64
}

// lost is the number of voters whose newest accepted vote is not what the store holds.
func (o outcome) lost() int { return o.missing + o.stale }

// compare reads the votes table directly and compares it with the report: every voter with
// a 2xx has a row holding its newest accepted vote (or a later vote whose answer was lost),
// and there are no rows beyond those (except, at most, one per new voter whose answer was
// lost).
func (sys *system) compare(rep *loadgen.Report) outcome {
	t := sys.t
	t.Helper()
	rows := map[string]string{}
	for _, r := range sys.pg.query("SELECT id, vote FROM votes") {
		rows[r[0]] = r[1]
	}
	o := outcome{accepted: rep.Accepted, voters: len(rep.Final)}
	var examples []string
	for voter, want := range rep.Final {
		got, ok := rows[voter]
		switch {
		case !ok:
			o.missing++
			examples = append(examples, fmt.Sprintf("%s: no row, want %s", voter, want))
		case got == want:
		case slices.Contains(rep.Unsure[voter], got):
			o.unsure++
		default:
			o.stale++
			examples = append(examples, fmt.Sprintf("%s: row %s, want %s", voter, got, want))
		}
	}
	for voter := range rows {
		if _, ok := rep.Final[voter]; !ok {
			o.extra++
		}
	}
	counts := map[string]int{}
	for _, r := range sys.pg.query("SELECT option, count FROM vote_counts WHERE count <> 0") {
		var n int
		fmt.Sscan(r[1], &n)
		counts[r[0]] = n
	}
	byOption := map[string]int{}
	for _, v := range rows {
		byOption[v]++
	}
	if fmt.Sprint(counts) != fmt.Sprint(byOption) {
		t.Errorf("vote_counts %v disagree with the votes table %v", counts, byOption)
	}
	o.dead, _ = sys.redis.client().XLen(context.Background(), sys.stream+":dead").Result()
	if len(examples) > 5 {
		examples = examples[:5]
	}
	t.Logf("lost: %d of %d accepted votes (%d voters: %d missing, %d stale; %d rows hold a vote whose answer was lost; %d extra rows, %d new voters unsure; %d dead letters) %v",
		o.lost(), o.accepted, o.voters, o.missing, o.stale, o.unsure, o.extra, rep.UnsureNew, o.dead, examples)
	return o
}

// requireNothingLost fails the test unless the store holds exactly what the voters were told.
func (sys *system) requireNothingLost(rep *loadgen.Report) outcome {
	t := sys.t
	t.Helper()
	o := sys.compare(rep)
	if rep.Accepted < loadVotes*9/10 {
		t.Errorf("only %d of %d votes accepted: the load did not get through the fault", rep.Accepted, loadVotes)
	}
	if o.lost() != 0 {
		t.Errorf("lost %d accepted votes, want 0", o.lost())
	}
	if o.extra > rep.UnsureNew {
		t.Errorf("%d rows of unknown voters, more than the %d new voters whose answer was lost", o.extra, rep.UnsureNew)
	}
	if o.dead != 0 {
		t.Errorf("%d dead letters, want 0", o.dead)
	}
	return o
}
