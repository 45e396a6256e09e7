// Package voting is the domain shared by every service: votes, options, tallies, the errors
// they produce and the small interfaces at the two seams (the queue and the store).
//
// It imports no other package of this module; adapters and services import it.
package voting

import (
	"context"
	"errors"
	"time"
)

// Vote is one voter's choice at one moment. At orders a voter's votes: the store keeps the
// newest one, so a message delivered twice or out of order changes nothing.
type Vote struct {
	VoterID string    `json:"voter_id"`
	Option  string    `json:"vote"`
	At      time.Time `json:"at"`
	// TraceParent is the W3C trace context of the request that cast the vote, "" when
	// tracing is off. It travels in the queue message so the worker's spans join the trace.
	TraceParent string `json:"-"`
}

// Newer reports whether v should replace stored. Votes are ordered by time, then by option id,
// so that two votes of one voter with the same timestamp resolve the same way whatever order
// they arrive in.
func (v Vote) Newer(stored Vote) bool {
	if !v.At.Equal(stored.At) {
		return v.At.After(stored.At)
	}
	return v.Option > stored.Option
}

// Validate checks a vote's fields for syntax. It does not check the option against the
// configured list: the vote service does that, and the worker must not drop a vote for an
// option that a newer configuration added.
func (v Vote) Validate() error {
	if !ValidVoterID(v.VoterID) {
		return ErrInvalidVoter
	}
	if !ValidOptionID(v.Option) {
		return ErrInvalidOption
	}
	if v.At.IsZero() {
		return ErrInvalidTime
	}
	return nil
}

// TimePrecision is the resolution at which vote times are kept. PostgreSQL stores
// microseconds, so every store and the vote service truncate to it; otherwise a vote could
// compare newer in memory and equal in the database.
const TimePrecision = time.Microsecond

// Now returns the current time at TimePrecision, in UTC.
func Now() time.Time { return time.Now().UTC().Truncate(TimePrecision) }

// Domain errors, checked with errors.Is. Their texts are safe to show to users.
var (
	ErrInvalidOption = errors.New("unknown or invalid option")
	ErrInvalidVoter  = errors.New("invalid voter id")
	ErrInvalidTime   = errors.New("invalid vote time")
	ErrMissingVote   = errors.New("missing vote: send vote=<option id>")
	// ErrUnavailable wraps failures of a dependency (queue or store) that may pass.
	ErrUnavailable = errors.New("service temporarily unavailable")
	// ErrClosed is returned by Consumer.Receive once the queue is closed and drained.
	ErrClosed = errors.New("queue closed")
)

// ValidVoterID reports whether id looks like a voter id: 1 to 64 characters of letters, digits,
// '-' or '_'. Voter ids come from a cookie the vote service sets, or from older clients (the
// original app used hex strings), so the check is on syntax only.
func ValidVoterID(id string) bool { return validToken(id, 64) }

// ValidOptionID reports whether id is a syntactically valid option id: 1 to 32 characters of
// letters, digits, '-' or '_'.
func ValidOptionID(id string) bool { return validToken(id, 32) }

func validToken(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Delivery is a vote handed to a consumer by the queue. It must be acknowledged (or
// dead-lettered) once handled; until then the queue may hand it to another consumer.
type Delivery struct {
	ID       string // queue-specific message id
	Vote     Vote
	Attempts int // how many times the message has been delivered, 1 the first time
}

// Kinds of dead letters, for metrics: why a message left the queue unhandled.
const (
	DeadUndecodable   = "undecodable"    // not a vote
	DeadMaxDeliveries = "max_deliveries" // delivered too often without being acknowledged
	DeadStoreRefused  = "store_refused"  // the store refused the vote itself
)

// DeadLetter is a message that was taken off the queue because it could not be handled.
type DeadLetter struct {
	ID     string // id of the original message
	Body   string // the original message, as received
	Reason string
}

// QueueStats describes a queue's backlog, for metrics and operators.
type QueueStats struct {
	// Length is the number of votes not yet acknowledged: waiting, or delivered and not
	// yet acknowledged.
	Length int64
	// Pending is the number of votes delivered and not yet acknowledged.
	Pending int64
	// OldestPendingAge is how long ago the oldest pending vote was published; 0 when
	// nothing is pending. It is the consumer lag.
	OldestPendingAge time.Duration
	// DeadLetters is the number of dead letters kept.
	DeadLetters int64
	// MemoryUsed and MemoryLimit are the queue server's memory in use and the most it may
	// use (Redis: used_memory and maxmemory). Past the limit the queue refuses new votes.
	// 0 when not known (or, for the limit, when there is none).
	MemoryUsed, MemoryLimit int64
}

// Publisher puts a vote on the queue. When Publish returns nil the vote is in the queue.
type Publisher interface {
	Publish(ctx context.Context, v Vote) error
}

// Consumer takes votes off the queue for one worker. Delivery is at least once: a delivery
// that is neither acknowledged nor dead-lettered is handed out again after a timeout, to this
// or another consumer. A message that cannot be decoded never reaches the caller: the
// consumer moves it to the dead letters itself.
type Consumer interface {
	// Receive waits until at least one delivery is available, or ctx is done, and returns
	// at most max deliveries.
	Receive(ctx context.Context, max int) ([]Delivery, error)
	// Ack marks deliveries as done; they are never delivered again.
	Ack(ctx context.Context, ds ...Delivery) error
	// DeadLetter moves a delivery to the dead letters with the reason, and acknowledges it.
	DeadLetter(ctx context.Context, d Delivery, reason string) error
	// Close stops the consumer; deliveries it holds unacknowledged are handed out again
	// after the timeout.
	Close() error
}

// Recorder records votes idempotently: one vote per voter, the newest wins (see Vote.Newer),
// and recording a vote again, or an older one, changes nothing. All votes of a call are
// committed together or not at all.
type Recorder interface {
	Record(ctx context.Context, votes []Vote) error
}

// Tally is the number of votes per option id, and when the newest vote counted was cast.
type Tally struct {
	Counts map[string]int64
	// Newest is the time of the newest vote that changed the counts, zero when unknown. The
	// result service measures vote-to-screen latency with it.
	Newest time.Time
	// NewestTrace is the trace context (W3C traceparent) of the newest traced vote
	// recorded, "" when tracing is off: the result's push joins that vote's trace.
	NewestTrace string
}

// NewestTraceParent returns the trace context of the newest of the votes that carry one, or
// "" when none does.
func NewestTraceParent(votes []Vote) string {
	var newest *Vote
	for i := range votes {
		if votes[i].TraceParent != "" && (newest == nil || votes[i].Newer(*newest)) {
			newest = &votes[i]
		}
	}
	if newest == nil {
		return ""
	}
	return newest.TraceParent
}

// Tallier reads the tally. The cost does not grow with the number of votes stored.
type Tallier interface {
	Tally(ctx context.Context) (Tally, error)
}

// Watcher signals changes to the tally. The channel receives a value soon after a commit
// that may have changed it, never for a Record that changed no stored vote, and may receive
// one for other reasons (a listener that reconnected); it is closed when ctx is done.
type Watcher interface {
	Watch(ctx context.Context) <-chan struct{}
}

// WorkerStatus is what a worker last reported to the store about counting. The result
// service never talks to the queue (the network policies keep it from Redis), so each worker
// says, in the store both can reach, when it last recorded votes and how many wait. Ages, not
// times: the store measures them against its own clock, so clocks of the machines that write
// and read do not matter.
type WorkerStatus struct {
	Worker string // the worker's instance name (its pod's)
	// Seen is how long ago the worker last reported.
	Seen time.Duration
	// Recorded is how long ago it last recorded votes; negative: not since it started.
	Recorded time.Duration
	// Backlog is how many votes waited in the queue when it last looked; negative: unknown.
	Backlog int64
	// Drills are the notices of the worker's drill faults that are on (package fault), for
	// the results page: a worker has no page of its own.
	Drills []string
}

// StatusKeeper keeps each worker's latest status, one per worker, and reads them back (the
// ones seen within the last day).
type StatusKeeper interface {
	// ReportStatus replaces the worker's status: seen now, votes last recorded recorded
	// ago (negative: not since it started, which keeps what an earlier report said), backlog
	// votes waiting (negative: unknown), and the notices of its drill faults that are on.
	ReportStatus(ctx context.Context, worker string, recorded time.Duration, backlog int64, drills []string) error
	WorkerStatuses(ctx context.Context) ([]WorkerStatus, error)
}

// Pinger checks that a dependency can be reached. Adapters implement it for readiness.
type Pinger interface {
	Ping(ctx context.Context) error
}
