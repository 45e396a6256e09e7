// Package result is the results web service: it reads the tally from the store when the
// store says it changed (and on a slow poll, as a safety net), and pushes each new snapshot
// to every browser over a WebSocket. It only reads the store.
package result

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// Config is what the result service needs to know.
type Config struct {
	Options voting.Options
	// PollInterval is how often the tally is read when the store signalled nothing. Changes
	// arrive by the store's signal within milliseconds; the poll only bounds how stale the
	// page can get if a signal is ever lost (e.g. while the listener reconnects).
	PollInterval time.Duration
	// Instance names the process on the page, as the vote page does, and in every snapshot
	// (/api/results and each WebSocket message), so that a person, or a check, can see which
	// replica serves them, also after a WebSocket reconnected to another one.
	Instance string
	// Tracer makes the push span, in the trace of the newest vote the push shows; nil means
	// no tracing.
	Tracer trace.Tracer
	// Faults are the drill faults of the process (Faults defines the result service's);
	// nil: none.
	Faults *fault.Set
	// MaxClients bounds the WebSocket clients connected at once; a handshake past it is
	// answered 503. Each client holds some 4-7 KiB (docs/reliability.md), so the bound keeps
	// a flood of sockets inside the process's memory. 0 means no bound.
	MaxClients int
	// MaxClientsPerAddr bounds the WebSocket clients of one address (an IPv4 address or an
	// IPv6 /64), so that one host cannot take every place of MaxClients. 0 means no bound.
	MaxClientsPerAddr int
	// ClientAddr names the client of a request for MaxClientsPerAddr: the TCP peer, or the
	// address a trusted proxy forwarded. nil means the TCP peer.
	ClientAddr func(*http.Request) netip.Addr
	// VersionLabel names the version on the page (a badge) and in the X-Voting-Version header
	// of every answer, as vote's does; "" shows nothing. See web.CheckVersionLabel.
	VersionLabel string
	// AccentColor colours a bar along the top of the page and the version badge: #rgb,
	// #rrggbb or a name of web.AccentNames; "" keeps the page's own colours.
	AccentColor string
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Options) < 2 {
		errs = append(errs, fmt.Errorf("want at least 2 options, got %d", len(c.Options)))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll interval %s must not be negative (0: the default, 5s)", c.PollInterval))
	}
	if c.MaxClients < 0 || c.MaxClientsPerAddr < 0 {
		errs = append(errs, fmt.Errorf("WebSocket client limits %d and %d must not be negative (0: no limit)", c.MaxClients, c.MaxClientsPerAddr))
	}
	if err := web.CheckVersionLabel(c.VersionLabel); err != nil {
		errs = append(errs, err)
	}
	if _, err := web.ParseAccentColor(c.AccentColor); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LogValue is the configuration as the start-up log shows it.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("options", c.Options.String()),
		slog.Duration("poll_interval", c.PollInterval),
		slog.Int("max_websockets", c.MaxClients),
		slog.Int("max_websockets_per_client", c.MaxClientsPerAddr),
		slog.String("version_label", c.VersionLabel),
		slog.String("accent_color", c.AccentColor),
	)
}

// Store is what the result service reads.
type Store interface {
	voting.Tallier
	voting.Watcher
}

// Service is the result web service.
type Service struct {
	cfg    Config
	store  Store
	log    *slog.Logger
	hub    *hub
	static *web.Static

	firstTally chan struct{} // closed after the first tally is published
	statusLog  sync.Once     // the workers' status could not be read: said once
	// statuses are the workers' statuses of the last read, for the page's drill notices
	// (which must show even while a drill stops the pushes).
	statuses atomic.Pointer[[]voting.WorkerStatus]

	tallyErrors    prometheus.Counter
	sent           prometheus.Counter
	dropped        prometheus.Counter
	clientsDropped prometheus.Counter
	refused        *prometheus.CounterVec
	refusedLog     refusalLog
	updated        prometheus.Gauge
	toPush         prometheus.Histogram
}

// New returns the service; Run must be running for it to have numbers to show.
func New(cfg Config, store Store, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}

	static, err := web.Assets(assetsFS)
	if err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	if err := static.SetAccent(cfg.AccentColor); err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	s := &Service{
		cfg: cfg, store: store, log: log, firstTally: make(chan struct{}), static: static,
		tallyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_tally_errors_total",
			Help: "Failed reads of the tally from the store.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_websocket_messages_sent_total",
			Help: "Snapshots written to WebSocket clients.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_websocket_messages_dropped_total",
			Help: "Snapshots replaced by a newer one before a slow client took them.",
		}),
		clientsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_websocket_clients_dropped_total",
			Help: "WebSocket clients disconnected because a write failed or timed out, or no frame came for two ping intervals.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voting_websocket_refused_total",
			Help: "WebSocket handshakes answered 503, by the limit they met: process_limit (--max-websockets) or client_limit (--max-websockets-per-client).",
		}, []string{"reason"}),
		toPush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "voting_vote_to_push_seconds",
			Help: "Time from a vote's acceptance to the push of a result that counts it, for the newest vote of each change.",
			// From a millisecond (push on commit) to 10 s (a backlog in the queue).
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		updated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voting_tally_updated_timestamp_seconds",
			Help: "When the tally was last read successfully (Unix time).",
		}),
	}
	s.hub = newHub(s.sent, s.clientsDropped, log, cfg.MaxClients, cfg.MaxClientsPerAddr)
	for _, r := range []string{refusedProcess, refusedAddr} {
		s.refused.WithLabelValues(r) // both show from the start, at 0
	}
	reg.MustRegister(s.tallyErrors, s.sent, s.dropped, s.clientsDropped, s.refused, s.updated, s.toPush,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "voting_websocket_clients",
			Help: "WebSocket clients connected now.",
		}, func() float64 { return float64(s.hub.clients()) }),
	)
	return s, nil
}

// Run reads the tally whenever the store signals a change, and every PollInterval, and
// publishes it to the clients when it differs from the last one. It returns when ctx is done.
func (s *Service) Run(ctx context.Context) error {
	defer s.hub.shutdown() // every client is told the server is going away, and closed
	changes := s.store.Watch(ctx)
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	var last []byte    // the snapshot published last, encoded
	var shown snapshot // and as it was read
	var lost time.Time // when reading the store began to fail; zero while it works
	var lastNewest time.Time
	var notBefore time.Time // pacing of broadcasts, see pace
	for {
		if wait := time.Until(notBefore); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		snap, t, err := s.read(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			s.tallyErrors.Inc()
			s.log.Warn("read tally", "err", err)
			if lost.IsZero() {
				lost = time.Now()
			}
			// The clients keep the last numbers, told that they may be out of date.
			if last != nil {
				shown.Pipeline = storeLost(lost)
				if b, err := json.Marshal(shown); err == nil && !bytes.Equal(b, last) {
					last = b
					s.dropped.Add(float64(s.hub.publish(b)))
				}
			}
		default:
			lost = time.Time{}
			b, err := json.Marshal(snap)
			if err != nil {
				s.log.Error("encode the result", "err", err)
				break
			}
			if bytes.Equal(b, last) || !s.holdPush(ctx) {
				break
			}
			shown = snap
			first := last == nil
			last = b
			newer := t.Newest.After(lastNewest)
			fresh := newer && !first // the first read after a start shows old votes
			var span trace.Span
			if fresh && t.NewestTrace != "" {
				_, span = s.cfg.Tracer.Start(telemetry.ExtractTraceParent(ctx, t.NewestTrace), "push result",
					trace.WithAttributes(attribute.Int("voting.websocket.clients", s.hub.clients())))
			}
			s.dropped.Add(float64(s.hub.publish(b)))
			if span != nil {
				span.End()
			}
			notBefore = time.Now().Add(pace(s.hub.clients()))
			if first {
				close(s.firstTally)
			}
			if fresh {
				s.toPush.Observe(time.Since(t.Newest).Seconds())
			}
			if newer {
				lastNewest = t.Newest
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil
			}
		case <-poll.C:
		}
	}
}

// snapshot is what /api/results answers and every WebSocket message carries: the result,
// which process sent it, and whether counting is up to date.
type snapshot struct {
	voting.Result
	Instance string   `json:"instance,omitempty"`
	Pipeline pipeline `json:"pipeline"`
	Drills   []string `json:"drills,omitempty"` // the drill faults that are on (faults.go)
}

// read returns the snapshot and the tally it comes from. The workers' statuses come from the
// same store when it keeps them; failing to read them only makes the pipeline unknown.
func (s *Service) read(ctx context.Context) (snapshot, voting.Tally, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t, err := s.store.Tally(ctx)
	if err != nil {
		return snapshot{}, voting.Tally{}, err
	}
	s.updated.SetToCurrentTime()
	r := s.cfg.Options.Result(t.Counts)
	var statuses []voting.WorkerStatus
	if keeper, ok := s.store.(voting.StatusKeeper); ok {
		if statuses, err = keeper.WorkerStatuses(ctx); err != nil {
			s.statusLog.Do(func() { s.log.Warn("read the workers' status (the page says counting is not known)", "err", err) })
		}
	}
	s.statuses.Store(&statuses)
	return snapshot{r, s.cfg.Instance, assess(r.Total, statuses, err), s.drills(statuses)}, t, nil
}

// Ready reports whether the service has a tally to show; readiness includes it so that a
// result pod is not sent traffic before it has numbers. Right after a start it waits (within
// the check's deadline) for the first read, which takes milliseconds, rather than failing
// and logging an outage that is not one.
func (s *Service) Ready(ctx context.Context) error {
	select {
	case <-s.firstTally:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no tally read yet")
	}
}

// pace is the least time between two broadcasts to n clients: about 10 µs per client (nothing
// for a handful, 10 ms for 1,000, 100 ms for 10,000, never more than 200 ms). Writing a
// snapshot to a client costs some 10 µs of CPU, nearly all of it the write system call
// (loopback TCP), so one broadcast to 10,000 clients is some 100 ms of CPU. Broadcasting
// then as often as the tally changes keeps the writers busy all the time, and the latest-wins
// queue would still give each client the newest numbers, but the vote path (worker,
// database, tally read) and the browsers wait behind them. Measured on 2 shared cores with
// 10,000 clients and 100 votes/s (docs/performance.md): vote → push p95 156-176 ms at 10 µs
// per client, 200-227 ms at 0 to 7.5 µs, 213 ms at 15 µs and 250 ms at 20 µs. Every broadcast
// carries the latest numbers, so nothing is lost.
func pace(n int) time.Duration {
	return min(time.Duration(n)*10*time.Microsecond, 200*time.Millisecond)
}

// clientAddr is the client of r for the limit per address: what Config.ClientAddr says, or
// the TCP peer.
func (s *Service) clientAddr(r *http.Request) netip.Addr {
	if s.cfg.ClientAddr != nil {
		return s.cfg.ClientAddr(r)
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// refusalLog writes the log line of refused WebSocket handshakes: the first of a kind at
// once, then at most one a second with the number refused meanwhile, so that a flood of
// handshakes past a limit cannot flood the log as well.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time // reason -> when its last line was written
	held map[string]int       // reason -> refusals since then, not logged yet
}

// note counts a refusal and reports whether to log it now, and how many refusals of the
// same reason went unlogged before it.
func (l *refusalLog) note(reason string, now time.Time) (log bool, unlogged int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if now.Sub(l.last[reason]) < time.Second {
		l.held[reason]++
		return false, 0
	}
	unlogged = l.held[reason]
	l.last[reason], l.held[reason] = now, 0
	return true, unlogged
}
