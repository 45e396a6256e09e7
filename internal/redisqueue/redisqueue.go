// Package redisqueue is the vote queue on a Redis Stream (Redis 6.2 or newer) with one
// consumer group shared by the workers. It knows nothing about HTTP or the store.
//
// Delivery is at least once:
//   - Publish is XADD; when it returns nil the vote is in the stream.
//   - Workers read new entries as members of the group (XREADGROUP), which leaves them
//     pending in the group until acknowledged.
//   - Ack is XACK together with XDEL: an acknowledged vote is recorded in the store, which
//     is the source of truth, so the stream only holds votes not yet recorded. This keeps
//     memory bounded by the backlog instead of growing with every vote ever cast, and
//     makes XLEN the backlog. No MAXLEN trimming is done: trimming removes entries whether
//     or not they are acknowledged, so it could lose accepted votes. The stream is a work
//     queue for this one group; anything else that wants the votes reads the store (a
//     second group on this stream would miss entries the workers already deleted).
//   - Entries that a dead worker left pending are claimed by another worker after
//     ClaimTimeout (XAUTOCLAIM); an entry delivered MaxDeliveries times without an ack goes
//     to the dead-letter stream instead of looping forever.
//   - A live worker keeps what it holds: a background refresher re-claims its outstanding
//     entries to itself with XCLAIM ... JUSTID, which resets their idle time without
//     counting a delivery, so a slow batch (a store that is down for a while) is not handed
//     to a second worker and the attempt counts stay true.
//   - Entries that are not valid votes never reach the worker: Receive moves them to the
//     dead-letter stream with the reason.
package redisqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/votingapp/voting/internal/voting"
)

// Field is the stream entry field that holds the encoded vote (voting.EncodeMessage).
const Field = "message"

// Defaults of Config.
const (
	DefaultStream = "votes"
	DefaultGroup  = "workers"
	// DefaultClaimTimeout is how long an entry stays with a worker that stopped refreshing
	// it (a dead one) before another worker takes it. It only delays recovery after a
	// crash, since live workers keep theirs, so it can be generous.
	DefaultClaimTimeout = 30 * time.Second
	// DefaultMaxDeliveries is how many times an entry is delivered before it is
	// dead-lettered.
	DefaultMaxDeliveries = 5
)

// maxBlock bounds one XREADGROUP BLOCK. go-redis does not interrupt a blocking command when
// its context is cancelled, so this is how long Receive can take to notice a done context
// and how long a worker takes to stop; it also lets Receive look for reclaimable entries
// between reads.
const maxBlock = time.Second

// ErrConsumerClosed is returned by Receive on a consumer after its Close. It wraps
// voting.ErrClosed: nothing more will come from this consumer.
var ErrConsumerClosed = fmt.Errorf("redisqueue: consumer %w", voting.ErrClosed)

// Config configures a Queue. Zero fields take the defaults.
type Config struct {
	// URL is the Redis URL, e.g. redis://:password@redis:6379/0 (rediss:// for TLS).
	URL string
	// Stream is the stream's key.
	Stream string
	// Group is the consumer group the workers share.
	Group string
	// DeadLetterStream holds the entries taken off the queue (default Stream+":dead"). It is
	// not trimmed: what lands there are votes that someone should look at, and only
	// failures put them there.
	DeadLetterStream string
	// ClaimTimeout is how long an entry may stay idle with a consumer before another
	// consumer claims it. Live consumers refresh theirs well within it.
	ClaimTimeout time.Duration
	// MaxDeliveries is how many times an entry is delivered before it is dead-lettered.
	MaxDeliveries int
	// OnDeadLetter, when set, is called for each message the queue itself moves to the dead
	// letters (kind voting.DeadUndecodable or voting.DeadMaxDeliveries), for metrics.
	OnDeadLetter func(kind string)
	// Logger receives the dead-lettering of undecodable entries and background errors;
	// nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("redisqueue: no Redis URL")
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.DeadLetterStream == "" {
		c.DeadLetterStream = c.Stream + ":dead"
	}
	if c.ClaimTimeout == 0 {
		c.ClaimTimeout = DefaultClaimTimeout
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.OnDeadLetter == nil {
		c.OnDeadLetter = func(string) {}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	// Below 100ms the refresher (every ClaimTimeout/4) would race Redis's millisecond
	// idle clock and scheduling noise.
	if c.ClaimTimeout < 100*time.Millisecond {
		return c, fmt.Errorf("redisqueue: claim timeout %v is under 100ms", c.ClaimTimeout)
	}
	if c.MaxDeliveries < 1 {
		return c, fmt.Errorf("redisqueue: max deliveries %d is under 1", c.MaxDeliveries)
	}
	return c, nil
}

// Queue is a vote queue on a Redis Stream. It is safe for concurrent use.
type Queue struct {
	client *redis.Client
	cfg    Config
	log    *slog.Logger
	// block is the longest XREADGROUP BLOCK: maxBlock, or less with short claim timeouts
	// so that reclaims are still checked about every ClaimTimeout/2.
	block        time.Duration
	reclaimEvery time.Duration
	refreshEvery time.Duration
	pipe         *pipeliner
}

var (
	_ voting.Publisher = (*Queue)(nil)
	_ voting.Pinger    = (*Queue)(nil)
	_ voting.Consumer  = (*consumer)(nil)
)

// New connects to Redis and creates the stream and the group if they do not exist yet.
// It fails when Redis cannot be reached, so that a wrong URL shows at start.
func New(ctx context.Context, cfg Config) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		// A *url.Error quotes the whole URL, password included: keep only the reason.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redisqueue: bad Redis URL: %w", err)
	}
	// go-redis retries a failed dial 5 times, 100ms apart, inside each of its command
	// retries (max_retries in the URL, 3 by default). With Redis down that makes every call
	// take seconds to fail; one dial per try still retries, and a vote gets its 503 fast.
	opt.DialerRetries = 1
	q := &Queue{
		client:       redis.NewClient(opt),
		cfg:          cfg,
		log:          cfg.Logger,
		block:        min(maxBlock, cfg.ClaimTimeout/2),
		reclaimEvery: cfg.ClaimTimeout / 2,
		// A quarter of the timeout leaves three refreshes' worth of slack for a slow
		// Redis or a busy machine before another consumer could take an entry.
		refreshEvery: cfg.ClaimTimeout / 4,
	}
	q.pipe = newPipeliner(q.client, cfg.Stream)
	// A Redis that cannot be reached yet is not a reason to refuse to start: the service
	// comes up not-ready (Ping fails) and works once Redis does; Receive creates the group
	// then. Failing here would turn a Redis outage into a restart loop of every pod.
	if err := q.ensureGroup(ctx); err != nil {
		if !errors.Is(err, voting.ErrUnavailable) || ctx.Err() != nil {
			q.Close()
			return nil, err
		}
		q.log.Warn("redis not reachable yet; the consumer group will be created when it is", "err", err)
	}
	return q, nil
}

// ensureGroup creates the group (and the stream) if missing. The group starts at id 0, not
// $, so that votes published before the group existed (the vote service may start first,
// or Redis may have restarted without the group) are delivered rather than skipped.
func (q *Queue) ensureGroup(ctx context.Context) error {
	err := q.client.XGroupCreateMkStream(ctx, q.cfg.Stream, q.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return q.fail(ctx, "create consumer group", err)
	}
	return nil
}

// fail wraps a Redis error as voting.ErrUnavailable, or returns the context's error when
// the context ended: that is the caller's doing, not an outage.
func (q *Queue) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("redisqueue: %s: %w: %w", op, voting.ErrUnavailable, err)
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// Publish adds v to the stream. Invalid votes are refused with the validation error; a
// Redis failure wraps voting.ErrUnavailable. go-redis retries on network errors, so a vote
// whose first XADD reached Redis but whose reply was lost may be queued twice, which the
// store's newest-wins upsert makes harmless.
func (q *Queue) Publish(ctx context.Context, v voting.Vote) error {
	if err := v.Validate(); err != nil {
		return fmt.Errorf("redisqueue: publish: %w", err)
	}
	return q.publish(ctx, voting.EncodeMessage(v))
}

func (q *Queue) publish(ctx context.Context, body []byte) error {
	// go-redis may still send a command whose context is already done.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := q.pipe.add(ctx, body); err != nil {
		if strings.HasPrefix(err.Error(), "OOM ") {
			// maxmemory with noeviction: Redis refuses the vote rather than drop another.
			err = fmt.Errorf("the queue is full, votes are refused until the workers drain it: %w", err)
		}
		return q.fail(ctx, "publish", err)
	}
	return nil
}

// Ping checks that Redis answers.
func (q *Queue) Ping(ctx context.Context) error {
	if err := q.client.Ping(ctx).Err(); err != nil {
		return q.fail(ctx, "ping", err)
	}
	return nil
}

// Close closes the connections. Close the consumers first.
func (q *Queue) Close() error {
	q.pipe.close()
	return q.client.Close()
}

// DeadLetters returns the n most recent dead letters (all of them when n <= 0), oldest
// first.
func (q *Queue) DeadLetters(ctx context.Context, n int) ([]voting.DeadLetter, error) {
	var msgs []redis.XMessage
	var err error
	if n > 0 {
		msgs, err = q.client.XRevRangeN(ctx, q.cfg.DeadLetterStream, "+", "-", int64(n)).Result()
		slices.Reverse(msgs)
	} else {
		msgs, err = q.client.XRange(ctx, q.cfg.DeadLetterStream, "-", "+").Result()
	}
	if err != nil {
		return nil, q.fail(ctx, "read dead letters", err)
	}
	dls := make([]voting.DeadLetter, len(msgs))
	for i, m := range msgs {
		str := func(k string) string { s, _ := m.Values[k].(string); return s }
		dls[i] = voting.DeadLetter{ID: str("id"), Body: str("body"), Reason: str("reason")}
	}
	return dls, nil
}

// Stats reads the queue's state in one round trip.
func (q *Queue) Stats(ctx context.Context) (voting.QueueStats, error) {
	pipe := q.client.Pipeline()
	length := pipe.XLen(ctx, q.cfg.Stream)
	pending := pipe.XPending(ctx, q.cfg.Stream, q.cfg.Group)
	dead := pipe.XLen(ctx, q.cfg.DeadLetterStream)
	if _, err := pipe.Exec(ctx); err != nil {
		return voting.QueueStats{}, q.fail(ctx, "stats", err)
	}
	s := voting.QueueStats{Length: length.Val(), Pending: pending.Val().Count, DeadLetters: dead.Val()}
	if s.Pending > 0 {
		if ms, ok := idTime(pending.Val().Lower); ok {
			s.OldestPendingAge = max(0, time.Since(time.UnixMilli(ms)))
		}
	}
	// Apart, so that a Redis whose ACL forbids INFO still reports the backlog.
	if info := q.client.InfoMap(ctx, "memory"); info.Err() == nil {
		s.MemoryUsed, _ = strconv.ParseInt(info.Item("Memory", "used_memory"), 10, 64)
		s.MemoryLimit, _ = strconv.ParseInt(info.Item("Memory", "maxmemory"), 10, 64)
	}
	return s, nil
}

// idTime returns the millisecond timestamp part of a stream entry id.
func idTime(id string) (int64, bool) {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	return n, err == nil
}

// Consumer returns a member of the group named name. Names must be unique among live
// workers (e.g. the pod name): entries pending with a name belong to whoever uses it.
// The consumer refreshes its outstanding deliveries in the background until Close.
func (q *Queue) Consumer(name string) voting.Consumer {
	c := &consumer{
		q:           q,
		name:        name,
		outstanding: map[string]string{},
		stop:        make(chan struct{}),
		stopped:     make(chan struct{}),
		cursor:      "0-0",
	}
	go c.refreshLoop()
	return c
}

type consumer struct {
	q    *Queue
	name string

	mu          sync.Mutex
	outstanding map[string]string // id → body of deliveries handed out and not yet acked
	closed      bool

	stop    chan struct{}
	stopped chan struct{}

	// recv serialises Receive and guards the reclaim state below.
	recv        sync.Mutex
	cursor      string // XAUTOCLAIM scan position; "0-0" between scans
	lastReclaim time.Time
}

func (c *consumer) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Receive returns up to max deliveries. It first takes over entries that have been idle
// with some consumer for longer than ClaimTimeout (at most every ClaimTimeout/2, since that
// is a scan of the pending list), then reads new entries, blocking on the server at most
// about a second per call so that a done ctx is noticed, until something arrives or ctx is
// done. Entries read while ctx ended are still returned: they are delivered already.
func (c *consumer) Receive(ctx context.Context, max int) ([]voting.Delivery, error) {
	if max < 1 {
		max = 1
	}
	c.recv.Lock()
	defer c.recv.Unlock()
	for {
		if c.isClosed() {
			return nil, ErrConsumerClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if time.Since(c.lastReclaim) >= c.q.reclaimEvery {
			ds, err := c.reclaim(ctx, max)
			if err != nil || len(ds) > 0 {
				return ds, err
			}
		}
		ds, err := c.readNew(ctx, max)
		if err != nil || len(ds) > 0 {
			return ds, err
		}
	}
}

// reclaim claims entries idle for longer than ClaimTimeout, continuing the XAUTOCLAIM scan
// where the last call stopped, until it has some or the scan is complete.
func (c *consumer) reclaim(ctx context.Context, max int) ([]voting.Delivery, error) {
	q := c.q
	for {
		msgs, next, err := q.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: q.cfg.Stream, Group: q.cfg.Group, Consumer: c.name,
			MinIdle: q.cfg.ClaimTimeout, Start: c.cursor, Count: int64(max),
		}).Result()
		if isNoGroup(err) {
			c.cursor = "0-0"
			return nil, q.ensureGroup(ctx)
		}
		if err != nil {
			return nil, q.fail(ctx, "claim idle entries", err)
		}
		c.cursor = next
		if next == "0-0" {
			c.lastReclaim = time.Now()
		}
		if len(msgs) > 0 {
			attempts, err := c.attempts(ctx, msgs)
			if err != nil {
				return nil, err
			}
			if ds := c.deliveries(ctx, msgs, attempts); len(ds) > 0 {
				return ds, nil
			}
		}
		if next == "0-0" {
			return nil, nil
		}
	}
}

// attempts returns the delivery count of each claimed entry. XAUTOCLAIM counted the claim
// but does not return the count, so it is read from the pending list, limited to this
// consumer and the claimed range; the entries in that range that are ours are the ones
// just claimed and those still outstanding.
func (c *consumer) attempts(ctx context.Context, msgs []redis.XMessage) (map[string]int, error) {
	c.mu.Lock()
	// Room for entries of ours in the range that are neither (a dead-lettering that
	// failed): a missing count only defers an entry to the next reclaim.
	n := 2*len(msgs) + len(c.outstanding)
	c.mu.Unlock()
	pend, err := c.q.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: c.q.cfg.Stream, Group: c.q.cfg.Group, Consumer: c.name,
		Start: msgs[0].ID, End: msgs[len(msgs)-1].ID, Count: int64(n),
	}).Result()
	if err != nil {
		return nil, c.q.fail(ctx, "read delivery counts", err)
	}
	attempts := make(map[string]int, len(pend))
	for _, p := range pend {
		attempts[p.ID] = int(p.RetryCount)
	}
	return attempts, nil
}

// readNew reads entries never delivered to the group.
func (c *consumer) readNew(ctx context.Context, max int) ([]voting.Delivery, error) {
	q := c.q
	block := q.block
	if dl, ok := ctx.Deadline(); ok {
		// Do not block past the caller's deadline; Redis counts in milliseconds.
		block = min(block, time.Until(dl))
		if block < time.Millisecond {
			return nil, context.DeadlineExceeded
		}
	}
	streams, err := q.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: q.cfg.Group, Consumer: c.name,
		Streams: []string{q.cfg.Stream, ">"}, Count: int64(max), Block: block,
	}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case isNoGroup(err):
		// The stream or the group is gone (deleted, or Redis restarted without
		// persistence): recreate it and go on with whatever is published from now on.
		q.log.Warn("consumer group missing; creating it", "stream", q.cfg.Stream, "group", q.cfg.Group)
		return nil, q.ensureGroup(ctx)
	case err != nil:
		return nil, q.fail(ctx, "read new entries", err)
	}
	if len(streams) == 0 { // one stream asked for: one answered, or none
		return nil, nil
	}
	return c.deliveries(ctx, streams[0].Messages, nil), nil
}

type deadEntry struct{ id, body, reason, kind string }

// deliveries turns entries into deliveries and records them as outstanding. attempts is
// nil for first deliveries. Entries that cannot be delivered (undecodable, or delivered too
// often) are moved to the dead letters here; if that fails they stay pending and come back
// after the claim timeout, so nothing is lost.
func (c *consumer) deliveries(ctx context.Context, msgs []redis.XMessage, attempts map[string]int) []voting.Delivery {
	var ds []voting.Delivery
	var bodies []string // bodies[i] is the body of ds[i]
	var dead []deadEntry
	var gone []string
	for _, m := range msgs {
		n := 1
		if attempts != nil {
			var ok bool
			if n, ok = attempts[m.ID]; !ok {
				continue // acknowledged meanwhile: not ours any more
			}
		}
		if m.Values == nil {
			// Redis 6.2 returns entries deleted while pending as empty; they hold
			// nothing to deliver.
			gone = append(gone, m.ID)
			continue
		}
		body, ok := m.Values[Field].(string)
		switch {
		case !ok:
			dead = append(dead, deadEntry{m.ID, fmt.Sprint(m.Values), fmt.Sprintf("entry has no %q field", Field), voting.DeadUndecodable})
			continue
		case n > c.q.cfg.MaxDeliveries:
			dead = append(dead, deadEntry{m.ID, body, fmt.Sprintf("delivered %d times without success", n-1), voting.DeadMaxDeliveries})
			continue
		}
		v, err := voting.DecodeMessage([]byte(body))
		if err != nil {
			dead = append(dead, deadEntry{m.ID, body, err.Error(), voting.DeadUndecodable})
			continue
		}
		ds = append(ds, voting.Delivery{ID: m.ID, Vote: v, Attempts: n})
		bodies = append(bodies, body)
	}
	c.mu.Lock()
	for i, d := range ds {
		c.outstanding[d.ID] = bodies[i]
	}
	c.mu.Unlock()
	if len(dead) > 0 || len(gone) > 0 {
		// The caller's context may be ending; moving these is part of having read them.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := c.deadLetter(dctx, dead, gone...); err != nil {
			c.q.log.Error("dead-letter entries", "count", len(dead), "err", err)
		} else {
			for _, d := range dead {
				c.q.log.Warn("entry dead-lettered", "message_id", d.id, "reason", d.reason, "consumer", c.name)
				c.q.cfg.OnDeadLetter(d.kind)
			}
		}
	}
	return ds
}

// deadLetter adds the entries to the dead-letter stream and acknowledges and deletes them
// (and the extra ids) in one MULTI, so an entry is never both dead and pending.
func (c *consumer) deadLetter(ctx context.Context, dead []deadEntry, extra ...string) error {
	q := c.q
	if len(dead) == 0 {
		return q.remove(ctx, extra)
	}
	ids := slices.Clone(extra)
	_, err := q.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, d := range dead {
			p.XAdd(ctx, &redis.XAddArgs{Stream: q.cfg.DeadLetterStream, Values: []any{
				"id", d.id, "body", d.body, "reason", d.reason, "consumer", c.name,
			}})
			ids = append(ids, d.id)
		}
		p.XAck(ctx, q.cfg.Stream, q.cfg.Group, ids...)
		p.XDel(ctx, q.cfg.Stream, ids...)
		return nil
	})
	return err
}

// ackChunk bounds the ids per XACK/XDEL so one huge batch does not make one huge command.
const ackChunk = 1000

// Ack acknowledges and deletes the deliveries, in one round trip per 1000. Whatever the
// outcome they stop being refreshed: if the ack did not reach Redis they come back after
// the claim timeout and are recorded again, which changes nothing in the store.
func (c *consumer) Ack(ctx context.Context, ds ...voting.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	ids := make([]string, len(ds))
	c.mu.Lock()
	for i, d := range ds {
		ids[i] = d.ID
		delete(c.outstanding, d.ID)
	}
	c.mu.Unlock()
	if err := c.q.remove(ctx, ids); err != nil {
		return c.q.fail(ctx, "ack", err)
	}
	return nil
}

// remove deletes the entries and then acknowledges them, in one round trip per ackChunk ids.
// Not in a MULTI: a Redis at its maxmemory refuses every command queued in a transaction,
// even those that free memory, so a full queue could never be drained (the votes were
// recorded, acknowledged never, and delivered again and again). In this order a failure
// between the two leaves an entry deleted but pending, which the next claim finds gone and
// acknowledges (see deliveries), never one acknowledged but kept.
func (q *Queue) remove(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := q.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for chunk := range slices.Chunk(ids, ackChunk) {
			p.XDel(ctx, q.cfg.Stream, chunk...)
			p.XAck(ctx, q.cfg.Stream, q.cfg.Group, chunk...)
		}
		return nil
	})
	return err
}

// DeadLetter moves d to the dead-letter stream with the reason, atomically with its ack.
func (c *consumer) DeadLetter(ctx context.Context, d voting.Delivery, reason string) error {
	c.mu.Lock()
	body, ok := c.outstanding[d.ID]
	delete(c.outstanding, d.ID)
	c.mu.Unlock()
	if !ok {
		body = string(voting.EncodeMessage(d.Vote))
	}
	if err := c.deadLetter(ctx, []deadEntry{{d.ID, body, reason, ""}}); err != nil {
		return c.q.fail(ctx, "dead-letter", err)
	}
	return nil
}

// Close stops the refresher. Deliveries not yet acknowledged stay pending with this
// consumer's name and are claimed by another consumer once idle for ClaimTimeout. Close is
// idempotent; it does not close the Queue.
func (c *consumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.stopped
	return nil
}

func (c *consumer) refreshLoop() {
	defer close(c.stopped)
	t := time.NewTicker(c.q.refreshEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.refresh()
		}
	}
}

// refresh resets the idle time of the outstanding deliveries. XCLAIM with min-idle 0 to
// ourselves, with JUSTID, which does not count as a delivery: the attempt count keeps
// meaning "how many workers took it and failed". Ids that are no longer pending (acked by
// another consumer that took them while this one stalled) are ignored by Redis.
func (c *consumer) refresh() {
	c.mu.Lock()
	ids := slices.Collect(maps.Keys(c.outstanding))
	c.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.q.refreshEvery)
	defer cancel()
	q := c.q
	_, err := q.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for chunk := range slices.Chunk(ids, ackChunk) {
			p.XClaimJustID(ctx, &redis.XClaimArgs{
				Stream: q.cfg.Stream, Group: q.cfg.Group, Consumer: c.name, Messages: chunk,
			})
		}
		return nil
	})
	if err != nil {
		q.log.Warn("refresh outstanding deliveries", "count", len(ids), "consumer", c.name, "err", err)
	}
}
