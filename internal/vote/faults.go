package vote

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/voting"
)

// The vote service's drill faults (package fault).
const (
	// FaultErrorRatio answers a share of votes 503 before they are queued: never accepted,
	// so never lost, and a client's retry is a new vote.
	FaultErrorRatio = "vote-error-ratio"
	// FaultLatency adds a time to every vote before it is queued.
	FaultLatency = "vote-latency"
)

// Faults are the definitions of the vote service's faults, for the process's fault.Set.
var Faults = []fault.Def{
	{Name: FaultErrorRatio, Kind: fault.Ratio, Help: "the share of votes answered 503 before they are queued (0 to 1)",
		Notice: func(v string) string {
			f, _ := strconv.ParseFloat(v, 64)
			return fmt.Sprintf("A drill is on: %.0f%% of votes are answered with an error on purpose (not counted; try again).", f*100)
		}},
	{Name: FaultLatency, Kind: fault.Duration, Help: "the time added to every vote before it is queued",
		Notice: func(v string) string { return "A drill is on: every vote is slowed down by " + v + " on purpose." }},
}

// injectFaults applies the faults that are on to a vote about to be queued: the added time
// first (until the client gives up), then the share of errors.
func (s *Service) injectFaults(ctx context.Context) error {
	if d := s.cfg.Faults.Duration(FaultLatency); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", voting.ErrUnavailable, ctx.Err())
		}
	}
	if ratio := s.cfg.Faults.Ratio(FaultErrorRatio); ratio > 0 && rand.Float64() < ratio {
		return fmt.Errorf("%w: the drill fault %s is on", voting.ErrUnavailable, FaultErrorRatio)
	}
	return nil
}
