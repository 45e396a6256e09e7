package result

import (
	"fmt"
	"time"

	"github.com/votingapp/voting/internal/voting"
)

// pipeline says whether counting is up to date: a state for programs, a sentence for people.
// It is in every snapshot, so that the page and GET /api/results say it where people look;
// the page shows the sentence quietly when the state is "ok", plainly otherwise.
type pipeline struct {
	State   string `json:"state"`
	Message string `json:"message"`
}

// The states of a pipeline.
const (
	pipelineOK        = "ok"                // workers report, and none has votes waiting for long
	pipelineStalled   = "stalled"           // votes wait in the queue, and no worker records them
	pipelineNoWorker  = "no_worker"         // no worker has reported for a while
	pipelineEmpty     = "empty"             // nothing counted, and no worker ever reported here
	pipelineUnknown   = "unknown"           // workers that do not report (another version, the original's), or statuses not readable
	pipelineStoreLost = "store_unreachable" // the result service cannot read the store
)

// staleAfter is how long a worker may go without reporting, or votes may wait without a
// worker recording any, before the page says so. Workers report every 2 s (worker.Config
// StatusEvery), and a batch takes milliseconds.
const staleAfter = 30 * time.Second

// assess tells from the workers' statuses, as the store keeps them, whether counting is up to
// date. total is the number of votes counted; statusErr says the statuses could not be read.
// Its sentences change only every minute or so, so that a pipeline in trouble does not make
// every client get a new snapshot at every poll.
func assess(total int64, statuses []voting.WorkerStatus, statusErr error) pipeline {
	switch {
	case statusErr != nil:
		return pipeline{pipelineUnknown, "Whether counting is up to date is not known here: the result service cannot read the workers' status (its log says why)."}
	case len(statuses) == 0 && total == 0:
		return pipeline{pipelineEmpty, "Nothing has been counted yet, and no worker has reported to this database: is a worker running, and on the same database as this page?"}
	case len(statuses) == 0:
		return pipeline{pipelineUnknown, "Whether counting is up to date is not known here: no worker reports its status to this database (a worker of an older version?)."}
	}
	live, backlog := 0, int64(0)
	lastSeen, lastRecorded := statuses[0].Seen, time.Duration(-1)
	for _, s := range statuses {
		lastSeen = min(lastSeen, s.Seen)
		if s.Seen > staleAfter {
			continue
		}
		live++
		backlog = max(backlog, s.Backlog)
		if s.Recorded >= 0 && (lastRecorded < 0 || s.Recorded < lastRecorded) {
			lastRecorded = s.Recorded
		}
	}
	switch {
	case live == 0:
		waiting := ""
		for _, s := range statuses {
			if s.Seen == lastSeen && s.Backlog > 0 {
				waiting = fmt.Sprintf(", when %d votes were waiting", s.Backlog)
			}
		}
		return pipeline{pipelineNoWorker, fmt.Sprintf("No worker has reported for %s%s: new votes are not being counted. Is a worker running?", roughly(lastSeen), waiting)}
	case backlog > 0 && (lastRecorded < 0 || lastRecorded > staleAfter):
		since := "since they started"
		if lastRecorded >= 0 {
			since = "for " + roughly(lastRecorded)
		}
		return pipeline{pipelineStalled, fmt.Sprintf("No vote has been recorded %s, and %d votes are waiting in the queue: the workers are running but not recording (is the database refusing them?).", since, backlog)}
	}
	workers := "1 worker"
	if live > 1 {
		workers = fmt.Sprintf("%d workers", live)
	}
	return pipeline{pipelineOK, fmt.Sprintf("Counting is up to date (%s counting).", workers)}
}

// storeLost is the pipeline while the result service cannot read the store, since then.
func storeLost(since time.Time) pipeline {
	return pipeline{pipelineStoreLost, fmt.Sprintf("The result service cannot reach the database since %s UTC: the numbers shown may be out of date.", since.UTC().Format("15:04:05"))}
}

// roughly says a duration the way the page does: coarse, so that the sentence stays the same
// for a while.
func roughly(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "over " + staleAfter.String()
	case d < 2*time.Minute:
		return "a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	case d < 2*time.Hour:
		return "an hour"
	default:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	}
}
