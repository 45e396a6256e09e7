package result

import (
	"context"
	"slices"
	"time"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/voting"
)

// The result service's drill faults (package fault). Neither touches the store: the counts
// stay right, only the pages see them late.
const (
	// FaultPushStop stops sending new numbers to the pages while it is on.
	FaultPushStop = "result-push-stop"
	// FaultPushDelay waits before each push.
	FaultPushDelay = "result-push-delay"
)

// Faults are the definitions of the result service's faults, for the process's fault.Set.
var Faults = []fault.Def{
	{Name: FaultPushStop, Kind: fault.Switch, Help: "stop pushing new numbers to the pages (and to /api/results)",
		Notice: func(string) string {
			return "A drill is on: this page gets no new numbers until it ends (reload to see them)."
		}},
	{Name: FaultPushDelay, Kind: fault.Duration, Help: "the time each new result waits before it is pushed",
		Notice: func(v string) string { return "A drill is on: new numbers reach this page " + v + " late." }},
}

// drills are the notices of the drill faults that are on, for the page: this process's, and
// those the workers that report now have on (a worker has no page of its own).
func (s *Service) drills(statuses []voting.WorkerStatus) []string {
	out := s.cfg.Faults.Notices()
	for _, st := range statuses {
		if st.Seen > staleAfter {
			continue
		}
		for _, d := range st.Drills {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// holdPush waits FaultPushDelay before a push, until ctx is done, and reports whether the
// push may go (FaultPushStop is off).
func (s *Service) holdPush(ctx context.Context) bool {
	if d := s.cfg.Faults.Duration(FaultPushDelay); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	return !s.cfg.Faults.On(FaultPushStop)
}
