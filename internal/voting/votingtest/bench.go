package votingtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/voting"
)

// BenchmarkRecord records batches as the worker does: 500 votes (its default batch size,
// the rate under load) and 1 vote (one commit per vote, the latency when idle), a mix of
// first votes and changed votes among a million voters. It reports votes per second. Each
// store's benchmarks call it with a constructor of a fresh store.
func BenchmarkRecord(b *testing.B, newStore func(b *testing.B) voting.Recorder) {
	for _, batch := range []int{500, 1} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := newStore(b)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			options := []string{"a", "b", "c"}
			start := voting.Now()
			n := 0
			for b.Loop() {
				votes := make([]voting.Vote, batch)
				for i := range votes {
					n++
					votes[i] = voting.Vote{
						VoterID: fmt.Sprintf("voter-%d", rng.IntN(1_000_000)),
						Option:  options[rng.IntN(len(options))],
						At:      start.Add(time.Duration(n) * time.Microsecond),
					}
				}
				if err := s.Record(ctx, votes); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "votes/s")
		})
	}
}

// BenchmarkReceiveAck receives and acknowledges b.N deliveries from c in batches of 500 (the
// worker's default batch size), as the worker does: the queue's cost per vote on the worker's
// side. Each queue's benchmark puts the b.N votes on the queue beforehand; the timer starts
// here.
func BenchmarkReceiveAck(b *testing.B, c voting.Consumer) {
	ctx := context.Background()
	b.ResetTimer()
	for n := 0; n < b.N; {
		ds, err := c.Receive(ctx, 500)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Ack(ctx, ds...); err != nil {
			b.Fatal(err)
		}
		n += len(ds)
	}
	b.StopTimer()
}
