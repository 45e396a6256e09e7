package sqlitestore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/voting"
)

// BenchmarkRecord records batches of 500 votes, as the worker does by default: a mix of
// first votes and changed votes among a million voters. It reports votes per second.
func BenchmarkRecord(b *testing.B) {
	s, _ := newTestStore(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	options := []string{"a", "b", "c"}
	const batch = 500
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
}
