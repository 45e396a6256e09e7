package worker

import (
	"context"
	"time"

	"github.com/votingapp/voting/internal/fault"
)

// The worker's drill faults (package fault). A worker has no page: its status report carries
// their notices to the results page. None loses a vote: they delay or stop the recording of
// votes that stay in the queue until a worker records them.
const (
	// FaultBatchDelay waits before each batch is recorded.
	FaultBatchDelay = "worker-batch-delay"
	// FaultStall stops taking votes from the queue while it is on.
	FaultStall = "worker-stall"
	// FaultExitAfter makes the worker's process exit (non-zero) once it has recorded that
	// many votes more, as a crash would, to drill restarts and redelivery.
	FaultExitAfter = "worker-exit-after"
)

// Faults are the definitions of the worker's faults, for the process's fault.Set.
var Faults = []fault.Def{
	{Name: FaultBatchDelay, Kind: fault.Duration, Help: "the time each batch of votes waits before it is recorded",
		Notice: func(v string) string {
			return "A drill is on in a worker: each batch of votes waits " + v + " before it is recorded."
		}},
	{Name: FaultStall, Kind: fault.Switch, Help: "stop taking votes from the queue (they wait there)",
		Notice: func(string) string { return "A drill is on in a worker: it has stopped taking votes from the queue." }},
	{Name: FaultExitAfter, Kind: fault.Count, Help: "exit (non-zero) after recording this many more votes",
		Notice: func(v string) string {
			return "A drill is on in a worker: it exits after recording " + v + " more votes."
		}},
}

// waitWhileStalled holds the worker while FaultStall is on, until ctx is done.
func (w *Worker) waitWhileStalled(ctx context.Context) {
	for w.cfg.Faults.On(FaultStall) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// delayBatch waits FaultBatchDelay, until ctx is done.
func (w *Worker) delayBatch(ctx context.Context) {
	if d := w.cfg.Faults.Duration(FaultBatchDelay); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}
