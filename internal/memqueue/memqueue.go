// Package memqueue is the in-process vote queue of the embedded default (`voting all` without
// a Redis URL). It links the vote service and the worker inside one process with the same
// consumer semantics as redisqueue: named consumers, deliveries pending until acknowledged,
// redelivery after a claim timeout when a consumer goes away, attempt counts, a delivery
// limit and dead letters.
//
// What a crash can lose: the queue lives only in memory. Votes that Publish accepted (the
// voter got a 2xx) but that the worker has not yet recorded and acknowledged are lost if the
// process is killed or crashes. Publish blocks when the queue is full instead of dropping, so
// the window is the backlog the worker has not caught up with, at most Config.Capacity votes.
// Deployments that cannot accept that use Redis.
//
// What a clean shutdown does not lose: Close stops Publish (it returns ErrClosed, which wraps
// voting.ErrUnavailable, so the vote service answers 503 rather than 2xx), while consumers go
// on receiving everything that is left; once nothing is left to hand out, Receive returns
// ErrClosed, which also wraps voting.ErrClosed, so the worker knows it is done. Drain waits
// until every accepted vote has been acknowledged or dead-lettered, so the shutdown sequence
// is: stop the vote server, Close the queue, Drain it with a deadline while the worker keeps
// running, then stop the worker.
//
// It knows nothing about HTTP or the store; it only holds valid votes (Publish validates), so
// there is no raw-message path and nothing undecodable can reach a consumer.
package memqueue

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/votingapp/voting/internal/voting"
)

// Defaults of Config, chosen to match redisqueue and the worker's flags.
const (
	// DefaultCapacity bounds memory: a queued vote takes well under 200 bytes, so a full
	// queue is around 20 MB.
	DefaultCapacity = 100_000
	// DefaultClaimTimeout is how long the deliveries of a closed consumer wait before they
	// are handed to another consumer.
	DefaultClaimTimeout = 30 * time.Second
	// DefaultMaxDeliveries is how many times a vote is delivered before it is dead-lettered.
	DefaultMaxDeliveries = 5
	// DefaultMaxDeadLetters bounds the dead letters kept in memory; the oldest go first.
	DefaultMaxDeadLetters = 10_000
)

// ErrClosed is returned by Publish once the queue is closed, and by Receive once it is
// closed and nothing is left to hand out. It wraps voting.ErrUnavailable, because during
// shutdown a vote cannot be accepted and the voter must not get a 2xx for it, and
// voting.ErrClosed, which tells the worker that the queue is drained.
var ErrClosed = fmt.Errorf("memqueue: %w (%w)", voting.ErrClosed, voting.ErrUnavailable)

// ErrConsumerClosed is returned by Receive on a consumer after its Close. It wraps
// voting.ErrClosed: nothing more will come from this consumer.
var ErrConsumerClosed = fmt.Errorf("memqueue: consumer %w", voting.ErrClosed)

// Config configures a Queue. Zero fields take the defaults.
type Config struct {
	// Capacity is the most votes held at once, waiting or being handled. Publish blocks
	// while the queue is full, so a 2xx to a voter still means the vote is queued.
	Capacity int
	// ClaimTimeout is how long the unacknowledged deliveries of a closed consumer stay
	// with it before another consumer receives them. A consumer that is not closed keeps
	// its deliveries however long it takes: in one process, not closed means alive.
	ClaimTimeout time.Duration
	// MaxDeliveries is how many times a vote is delivered; when a vote comes back after
	// that many deliveries it is dead-lettered instead.
	MaxDeliveries int
	// MaxDeadLetters bounds the dead letters kept in memory.
	MaxDeadLetters int
	// OnDeadLetter, when set, is called for each vote the queue itself moves to the dead
	// letters (kind voting.DeadMaxDeliveries), for metrics.
	OnDeadLetter func(kind string)
	// Logger receives the votes dead-lettered for too many deliveries (the worker logs
	// the ones it dead-letters itself); nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Capacity <= 0 {
		c.Capacity = DefaultCapacity
	}
	if c.ClaimTimeout <= 0 {
		c.ClaimTimeout = DefaultClaimTimeout
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.MaxDeadLetters <= 0 {
		c.MaxDeadLetters = DefaultMaxDeadLetters
	}
	if c.OnDeadLetter == nil {
		c.OnDeadLetter = func(string) {}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Queue is a bounded in-process vote queue. It is safe for concurrent use.
type Queue struct {
	cfg Config

	mu sync.Mutex
	// changed is closed and replaced whenever something a waiter may be waiting for
	// happens (a publish, an ack, a consumer or the queue closing), so waiters can select
	// on it together with their context.
	changed chan struct{}
	seq     uint64
	ready   []*entry          // not yet delivered, oldest first
	pending map[string]*entry // delivered, not yet acknowledged
	// orphans are pending entries whose consumer closed; each becomes deliverable again
	// at its expires time.
	orphans []*entry
	dead    []voting.DeadLetter
	closed  bool
}

type entry struct {
	id        string
	seq       uint64
	vote      voting.Vote
	published time.Time
	attempts  int
	owner     *consumer
	expires   time.Time // zero while the owner is open
}

var (
	_ voting.Publisher = (*Queue)(nil)
	_ voting.Pinger    = (*Queue)(nil)
	_ voting.Consumer  = (*consumer)(nil)
)

// New returns an empty queue.
func New(cfg Config) *Queue {
	return &Queue{
		cfg:     cfg.withDefaults(),
		changed: make(chan struct{}),
		pending: map[string]*entry{},
	}
}

// broadcast wakes every waiter. Called with mu held.
func (q *Queue) broadcast() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Publish queues v. It blocks while the queue is full, until there is room or ctx is done,
// so that a nil return always means the vote is queued. Invalid votes are refused with the
// validation error.
func (q *Queue) Publish(ctx context.Context, v voting.Vote) error {
	if err := v.Validate(); err != nil {
		return fmt.Errorf("memqueue: publish: %w", err)
	}
	// The same normalisation as the Redis wire format, so both queues deliver equal votes.
	v.At = v.At.UTC().Truncate(voting.TimePrecision)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrClosed
		}
		if len(q.ready)+len(q.pending) < q.cfg.Capacity {
			q.seq++
			q.ready = append(q.ready, &entry{id: strconv.FormatUint(q.seq, 10), seq: q.seq, vote: v, published: time.Now()})
			q.broadcast()
			q.mu.Unlock()
			return nil
		}
		changed := q.changed
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Ping reports whether the queue accepts votes: ErrClosed after Close.
func (q *Queue) Ping(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	return ctx.Err()
}

// Close stops accepting votes; Publish returns ErrClosed from now on, including calls blocked
// on a full queue. Consumers keep receiving what is left (see Drain). Close is idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.broadcast()
	}
	return nil
}

// Drain waits until every vote the queue accepted has been acknowledged or dead-lettered,
// or ctx is done. Call it after Close while consumers are still running; whatever is left
// when it gives up is lost with the process.
func (q *Queue) Drain(ctx context.Context) error {
	for {
		q.mu.Lock()
		n := len(q.ready) + len(q.pending)
		changed := q.changed
		q.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("memqueue: drain: %d votes left: %w", n, ctx.Err())
		case <-changed:
		}
	}
}

// DeadLetters returns up to n of the most recent dead letters (all of them when n <= 0),
// oldest first.
func (q *Queue) DeadLetters(n int) []voting.DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dead
	if n > 0 && len(d) > n {
		d = d[len(d)-n:]
	}
	return slices.Clone(d)
}

// Stats returns a snapshot of the queue. The error is always nil; it is there so that both
// queues can be read the same way.
func (q *Queue) Stats(context.Context) (voting.QueueStats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := voting.QueueStats{
		Length:      int64(len(q.ready) + len(q.pending)),
		Pending:     int64(len(q.pending)),
		DeadLetters: int64(len(q.dead)),
	}
	var oldest time.Time
	for _, e := range q.pending {
		if oldest.IsZero() || e.published.Before(oldest) {
			oldest = e.published
		}
	}
	if !oldest.IsZero() {
		s.OldestPendingAge = time.Since(oldest)
	}
	return s, nil
}

// Consumer returns a new consumer named name. Names are for dead letters and logs; two
// consumers never share deliveries whatever their names.
func (q *Queue) Consumer(name string) voting.Consumer {
	return &consumer{q: q, name: name, held: map[string]*entry{}}
}

type consumer struct {
	q      *Queue
	name   string
	held   map[string]*entry // guarded by q.mu
	closed bool              // guarded by q.mu
}

// Receive hands out, first, deliveries of closed consumers whose claim timeout has passed
// (oldest first), then new votes, as redisqueue does. After the queue's Close it returns
// ErrClosed once nothing is left.
func (c *consumer) Receive(ctx context.Context, max int) ([]voting.Delivery, error) {
	if max < 1 {
		max = 1
	}
	q := c.q
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.mu.Lock()
		if c.closed {
			q.mu.Unlock()
			return nil, ErrConsumerClosed
		}
		now := time.Now()
		var ds []voting.Delivery
		wake := q.reclaimLocked(c, now, max, &ds)
		for len(ds) < max && len(q.ready) > 0 {
			e := q.ready[0]
			q.ready[0] = nil
			q.ready = q.ready[1:]
			ds = append(ds, c.takeLocked(e))
		}
		if len(q.ready) == 0 {
			q.ready = nil // let the backing array go
		}
		// Closed and nothing waiting, not even deliveries of closed consumers that will
		// come back: the queue is drained as far as this consumer can help.
		drained := q.closed && len(ds) == 0 && len(q.ready) == 0 && wake.IsZero()
		changed := q.changed
		q.mu.Unlock()
		if len(ds) > 0 {
			return ds, nil
		}
		if drained {
			return nil, ErrClosed
		}
		var timer *time.Timer
		var due <-chan time.Time
		if !wake.IsZero() {
			timer = time.NewTimer(time.Until(wake))
			due = timer.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// reclaimLocked moves expired orphans to c (or to the dead letters once they have been
// delivered MaxDeliveries times) and returns the earliest time an orphan that is not yet
// due expires, zero when there is none.
func (q *Queue) reclaimLocked(c *consumer, now time.Time, max int, ds *[]voting.Delivery) time.Time {
	if len(q.orphans) == 0 {
		return time.Time{}
	}
	var wake time.Time
	kept := q.orphans[:0]
	freed := false
	for _, e := range q.orphans {
		if q.pending[e.id] != e || e.owner == nil || !e.owner.closed {
			continue // acknowledged, or already reclaimed
		}
		if e.expires.After(now) || len(*ds) >= max {
			if wake.IsZero() || e.expires.Before(wake) {
				wake = e.expires
			}
			kept = append(kept, e)
			continue
		}
		delete(e.owner.held, e.id)
		if e.attempts >= q.cfg.MaxDeliveries {
			delete(q.pending, e.id)
			reason := fmt.Sprintf("delivered %d times without success", e.attempts)
			q.deadLetterLocked(e, reason)
			q.cfg.Logger.Warn("vote dead-lettered", "message_id", e.id, "reason", reason, "consumer", c.name)
			q.cfg.OnDeadLetter(voting.DeadMaxDeliveries)
			freed = true
			continue
		}
		*ds = append(*ds, c.takeLocked(e))
	}
	clear(q.orphans[len(kept):])
	q.orphans = kept
	if freed {
		q.broadcast()
	}
	return wake
}

// takeLocked makes c the owner of e and returns its delivery.
func (c *consumer) takeLocked(e *entry) voting.Delivery {
	e.attempts++
	e.owner = c
	e.expires = time.Time{}
	c.held[e.id] = e
	c.q.pending[e.id] = e
	return voting.Delivery{ID: e.id, Vote: e.vote, Attempts: e.attempts}
}

func (q *Queue) deadLetterLocked(e *entry, reason string) {
	if len(q.dead) >= q.cfg.MaxDeadLetters {
		q.dead = slices.Delete(q.dead, 0, len(q.dead)-q.cfg.MaxDeadLetters+1)
	}
	q.dead = append(q.dead, voting.DeadLetter{ID: e.id, Body: string(voting.EncodeMessage(e.vote)), Reason: reason})
}

// Ack removes the deliveries from the queue. Ids that are no longer pending (acknowledged
// already, or dead-lettered) are ignored, so acknowledging twice is harmless.
func (c *consumer) Ack(ctx context.Context, ds ...voting.Delivery) error {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, d := range ds {
		if e := q.pending[d.ID]; e != nil {
			q.removeLocked(e)
			n++
		}
	}
	if n > 0 {
		q.broadcast()
	}
	return nil
}

func (q *Queue) removeLocked(e *entry) {
	delete(q.pending, e.id)
	if e.owner != nil {
		delete(e.owner.held, e.id)
	}
}

// DeadLetter moves d to the dead letters with the reason. A delivery that is no longer
// pending is left alone: whoever acknowledged it handled it.
func (c *consumer) DeadLetter(ctx context.Context, d voting.Delivery, reason string) error {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if e := q.pending[d.ID]; e != nil {
		q.removeLocked(e)
		q.deadLetterLocked(e, reason)
		q.broadcast()
	}
	return nil
}

// Close stops the consumer. Its unacknowledged deliveries go to another consumer after the
// claim timeout. Close is idempotent.
func (c *consumer) Close() error {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	expires := time.Now().Add(q.cfg.ClaimTimeout)
	for _, e := range c.held {
		e.expires = expires
		q.orphans = append(q.orphans, e)
	}
	// Oldest first, as Receive hands them out; sequence numbers are unique.
	slices.SortFunc(q.orphans, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	q.broadcast()
	return nil
}
