// Package worker moves votes from the queue into the store. It records a batch, and only
// then acknowledges it, so a worker killed at any moment loses nothing: what it did not
// acknowledge is delivered again, and recording is idempotent.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
)

// Config tunes the worker.
type Config struct {
	// BatchSize is the most votes recorded in one transaction. Bigger batches cost the
	// store less per vote; 500 already makes the per-transaction cost small.
	BatchSize int
	// StopTimeout is how long the batches the worker holds may keep retrying after it was
	// told to stop, all together. Past it they are left unacknowledged and another worker
	// takes them.
	StopTimeout time.Duration
	// OnDeadLetter, when set, is called for each vote the worker dead-letters, with the
	// kind voting.DeadStoreRefused, for metrics.
	OnDeadLetter func(kind string)
	// Tracer makes each traced vote's spans; nil means no tracing.
	Tracer trace.Tracer
	// Instance names the worker in the status it reports (its pod's name). The worker
	// reports, every StatusEvery, when it last recorded votes and how many wait (Backlog),
	// when Instance is set and the store keeps statuses (voting.StatusKeeper): the result
	// page tells from them whether counting is up to date.
	Instance string
	// Backlog returns how many votes wait in the queue; nil: unknown.
	Backlog func(ctx context.Context) (int64, error)
	// StatusEvery is how often the status is reported; 0 means every 2 s.
	StatusEvery time.Duration
	// Faults are the drill faults of the process (Faults defines the worker's); nil: none.
	Faults *fault.Set
}

// Validate reports every problem of the configuration at once. Zero values mean the
// defaults: a batch of 500, 10 s to stop.
func (c Config) Validate() error {
	var errs []error
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch size %d must not be negative (0: the default, 500)", c.BatchSize))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("stop timeout %s must not be negative (0: the default, 10s)", c.StopTimeout))
	}
	if c.StatusEvery < 0 {
		errs = append(errs, fmt.Errorf("status interval %s must not be negative (0: the default, 2s)", c.StatusEvery))
	}
	return errors.Join(errs...)
}

// LogValue is the configuration as the start-up log shows it.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("batch_size", c.BatchSize), slog.Duration("stop_timeout", c.StopTimeout))
}

// Worker consumes votes and records them.
type Worker struct {
	cfg      Config
	consumer voting.Consumer
	rec      voting.Recorder
	log      *slog.Logger

	// recorded is when the worker last recorded a batch (UnixNano), 0 before the first.
	recorded atomic.Int64
	// exit counts down the votes to record before the worker exits, for FaultExitAfter:
	// exitSet is the fault's value it was set from (0: off).
	exit, exitSet int64

	processed   prometheus.Counter
	storeErrors prometheus.Counter
	batchSize   prometheus.Histogram
	writeTime   prometheus.Histogram
	lag         prometheus.Histogram
}

// New returns a worker; Run starts it.
func New(cfg Config, c voting.Consumer, rec voting.Recorder, log *slog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if cfg.OnDeadLetter == nil {
		cfg.OnDeadLetter = func(string) {}
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.StatusEvery == 0 {
		cfg.StatusEvery = 2 * time.Second
	}
	w := &Worker{
		cfg: cfg, consumer: c, rec: rec, log: log,
		processed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_votes_processed_total",
			Help: "Votes recorded in the store and acknowledged.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_store_errors_total",
			Help: "Failed attempts to record a batch.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "voting_worker_batch_size",
			Help:    "Votes per recorded batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		writeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "voting_store_write_duration_seconds",
			Help:    "Time to record one batch in the store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "voting_vote_record_lag_seconds",
			Help:    "Time from a vote's acceptance to its commit in the store.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
	}
	reg.MustRegister(w.processed, w.storeErrors, w.batchSize, w.writeTime, w.lag)
	return w, nil
}

// Run consumes until ctx is done or the queue is closed and drained. When ctx is done it
// takes no new votes but finishes the batches it holds, for StopTimeout at most: what is not
// recorded by then is left unacknowledged and delivered again.
//
// The next batch is received while the current one is recorded: the queue's round trip and
// the store's transaction overlap instead of taking turns, which is most of what one worker
// can gain (a worker then holds at most two batches).
func (w *Worker) Run(ctx context.Context) error {
	// stopCtx outlives ctx by StopTimeout: one deadline for all the batches held, so that
	// stopping takes StopTimeout at most, however many there are.
	stopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopTimer := context.AfterFunc(ctx, func() { time.AfterFunc(w.cfg.StopTimeout, cancel) })
	defer stopTimer()
	// Unbuffered: receive holds the next batch while this loop records the current one; a
	// buffer would only let it take a third from the queue, which no other worker can then
	// have.
	batches := make(chan []voting.Delivery)
	go w.receive(ctx, batches)
	if keeper, ok := w.rec.(voting.StatusKeeper); ok && w.cfg.Instance != "" {
		go w.reportStatus(ctx, keeper)
	}
	for ds := range batches {
		w.handle(ctx, stopCtx, ds)
		if err := w.exitFault(len(ds)); err != nil {
			return err
		}
	}
	return nil
}

// exitFault counts n votes handled against FaultExitAfter, and returns an error, which ends
// Run and so the process, once as many as it says have been recorded since it was set.
func (w *Worker) exitFault(n int) error {
	set := w.cfg.Faults.Count(FaultExitAfter)
	if set != w.exitSet { // switched on, changed or off: count anew
		w.exitSet, w.exit = set, set
	}
	if set == 0 {
		return nil
	}
	if w.exit -= int64(n); w.exit > 0 {
		return nil
	}
	w.log.Warn("exiting on purpose: the drill fault is on", "fault", FaultExitAfter, "votes", set)
	return fmt.Errorf("the drill fault %s=%d: exiting after recording %d votes", FaultExitAfter, set, set)
}

// reportStatus tells the store, every StatusEvery until ctx is done, when the worker last
// recorded votes and how many wait in the queue. A failed report is only logged at debug
// level: a store or queue that cannot be reached already shows in readiness and in the
// batches' retries, and the result page says that no worker has reported.
func (w *Worker) reportStatus(ctx context.Context, keeper voting.StatusKeeper) {
	tick := time.NewTicker(w.cfg.StatusEvery)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.StatusEvery)
		backlog := int64(-1)
		if w.cfg.Backlog != nil {
			if n, err := w.cfg.Backlog(rctx); err == nil {
				backlog = n
			}
		}
		recorded := time.Duration(-1)
		if at := w.recorded.Load(); at != 0 {
			recorded = time.Since(time.Unix(0, at))
		}
		if err := keeper.ReportStatus(rctx, w.cfg.Instance, recorded, backlog, w.cfg.Faults.Notices()); err != nil && ctx.Err() == nil {
			w.log.Debug("report status", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// receive hands batches to Run until ctx is done or the queue is closed and drained, then
// closes the channel.
func (w *Worker) receive(ctx context.Context, batches chan<- []voting.Delivery) {
	defer close(batches)
	backoff := newBackoff()
	for ctx.Err() == nil {
		w.waitWhileStalled(ctx)
		ds, err := w.consumer.Receive(ctx, w.cfg.BatchSize)
		if len(ds) > 0 {
			// Run takes every batch until the channel is closed, so what was received
			// is recorded even when the worker is stopping now.
			batches <- ds
		}
		switch {
		case errors.Is(err, voting.ErrClosed), ctx.Err() != nil:
			return
		case err != nil:
			w.log.Error("receive votes", "err", err)
			backoff.wait(ctx)
			continue
		}
		backoff.reset()
	}
}

// handle records a batch and acknowledges it. A store that is unavailable is retried with
// backoff, for as long as it takes while running (ctx), and until stopCtx is done once
// stopping. A vote the store refuses for what it is (not for being unavailable) is
// dead-lettered alone.
func (w *Worker) handle(ctx, stopCtx context.Context, ds []voting.Delivery) {
	backoff := newBackoff()
	for {
		err := w.record(stopCtx, ds)
		if err == nil {
			w.ack(stopCtx, ds)
			return
		}
		if stopCtx.Err() != nil {
			w.log.Warn("stopping with a batch not recorded; it will be delivered again", "batch", len(ds), "err", err)
			return
		}
		w.storeErrors.Inc()
		if !errors.Is(err, voting.ErrUnavailable) {
			w.log.Warn("batch refused by the store; recording its votes one by one", "batch", len(ds), "err", err)
			if ds, err = w.recordEach(stopCtx, ds); len(ds) == 0 {
				return
			}
		}
		w.log.Warn("store or queue unavailable; retrying the batch", "batch", len(ds), "err", err)
		// A stop cuts a wait short (the batch gets another try at once), and the stop
		// deadline ends the waits after it.
		if ctx.Err() == nil {
			backoff.wait(ctx)
		} else {
			backoff.wait(stopCtx)
		}
	}
}

func (w *Worker) record(ctx context.Context, ds []voting.Delivery) error {
	w.delayBatch(ctx)
	votes := make([]voting.Vote, len(ds))
	for i, d := range ds {
		votes[i] = d.Vote
	}
	start := time.Now()
	err := w.rec.Record(ctx, votes)
	now := time.Now()
	w.trace(ds, start, now, err)
	if err != nil {
		return err
	}
	w.recorded.Store(now.UnixNano())
	w.writeTime.Observe(now.Sub(start).Seconds())
	w.batchSize.Observe(float64(len(ds)))
	for _, v := range votes {
		w.lag.Observe(now.Sub(v.At).Seconds())
	}
	return nil
}

// trace adds, to the trace of each vote that carries one, the worker's span and the store
// write it took part in, so one trace runs from the POST through the queue to the commit.
// A batch is one transaction for many traces, so each gets a span of the same interval.
func (w *Worker) trace(ds []voting.Delivery, start, end time.Time, err error) {
	for _, d := range ds {
		if d.Vote.TraceParent == "" {
			continue
		}
		ctx := telemetry.ExtractTraceParent(context.Background(), d.Vote.TraceParent)
		ctx, span := w.cfg.Tracer.Start(ctx, "record vote", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("messaging.message.id", d.ID), attribute.Int("voting.attempts", d.Attempts),
				attribute.Int("messaging.batch.message_count", len(ds))))
		_, store := w.cfg.Tracer.Start(ctx, "store record batch", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start))
		if err != nil {
			store.SetStatus(codes.Error, err.Error())
			span.SetStatus(codes.Error, err.Error())
		}
		store.End(trace.WithTimestamp(end))
		span.End(trace.WithTimestamp(end))
	}
}

// recordEach records the votes of a refused batch one at a time, so one bad vote does not
// hold back the others, dead-letters each vote the store refuses, and acknowledges the
// recorded ones together. It returns the deliveries it could not settle, because the store
// became unavailable or a dead-lettering failed, with the error, for handle to retry: a live
// consumer keeps what it holds, so a delivery merely left alone would never come back.
func (w *Worker) recordEach(ctx context.Context, ds []voting.Delivery) (rest []voting.Delivery, err error) {
	var recorded []voting.Delivery
	for i, d := range ds {
		rerr := w.record(ctx, []voting.Delivery{d})
		if rerr == nil {
			recorded = append(recorded, d)
			continue
		}
		if errors.Is(rerr, voting.ErrUnavailable) {
			// Not the votes' fault: this one and the rest wait for the store.
			rest, err = append(rest, ds[i:]...), rerr
			break
		}
		if derr := w.consumer.DeadLetter(ctx, d, "store refused the vote: "+rerr.Error()); derr != nil {
			w.log.Error("dead-letter vote", "message_id", d.ID, "err", derr)
			rest, err = append(rest, d), derr
			continue
		}
		w.cfg.OnDeadLetter(voting.DeadStoreRefused)
		w.log.Warn("vote dead-lettered", "message_id", d.ID, "reason", rerr)
	}
	if len(recorded) > 0 {
		w.ack(ctx, recorded)
	}
	return rest, err
}

func (w *Worker) ack(ctx context.Context, ds []voting.Delivery) {
	if err := w.consumer.Ack(ctx, ds...); err != nil {
		// Recorded but not acknowledged: they will be delivered and recorded again, which
		// changes nothing.
		w.log.Warn("acknowledge votes", "batch", len(ds), "err", err)
		return
	}
	w.processed.Add(float64(len(ds)))
}

// backoff waits 100 ms, then doubles up to 5 s: quick to recover from a blip, gentle on a
// server that is down.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.d = min(2*b.d, 5*time.Second)
}
