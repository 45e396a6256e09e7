// Package result is the results web service: it reads the tally from the store when the
// store says it changed (and on a slow poll, as a safety net), and pushes each new snapshot
// to every browser over a WebSocket. It only reads the store.
package result

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	Instance     string
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
	page   *template.Template
	static *web.Static

	stopping chan struct{} // closed when Run returns: WebSocket handlers say goodbye

	tallyErrors prometheus.Counter
	sent        prometheus.Counter
	dropped     prometheus.Counter
	updated     prometheus.Gauge
}

// New returns the service; Run must be running for it to have numbers to show.
func New(cfg Config, store Store, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if len(cfg.Options) < 2 {
		return nil, fmt.Errorf("result: want at least 2 options, got %d", len(cfg.Options))
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	sub, err := fs.Sub(assetsFS, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("result: assets: %w", err)
	}
	static, err := web.NewStatic(sub, "/static/")
	if err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	page, err := template.New("index.html").Funcs(template.FuncMap{"asset": static.URL}).ParseFS(assetsFS, "assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("result: parse page: %w", err)
	}
	s := &Service{
		cfg: cfg, store: store, log: log, hub: newHub(), page: page, stopping: make(chan struct{}), static: static,
		tallyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_tally_errors_total",
			Help: "Failed reads of the tally from the store.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_websocket_messages_sent_total",
			Help: "Snapshots written to WebSocket clients.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_websocket_clients_dropped_total",
			Help: "WebSocket clients disconnected because a write failed or timed out.",
		}),
		updated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voting_tally_updated_timestamp_seconds",
			Help: "When the tally was last read successfully (Unix time).",
		}),
	}
	reg.MustRegister(s.tallyErrors, s.sent, s.dropped, s.updated,
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
	defer close(s.stopping)
	changes := s.store.Watch(ctx)
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	var last []byte
	for {
		if b, err := s.read(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.tallyErrors.Inc()
			s.log.Warn("read tally", "err", err)
		} else if !bytes.Equal(b, last) {
			last = b
			s.hub.publish(b)
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

func (s *Service) read(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	counts, err := s.store.Tally(ctx)
	if err != nil {
		return nil, err
	}
	s.updated.SetToCurrentTime()
	return json.Marshal(s.cfg.Options.Result(counts))
}

// Ready reports whether the service has a tally to show; readiness includes it so that a
// result pod is not sent traffic before it has numbers.
func (s *Service) Ready(context.Context) error {
	if s.hub.snapshot() == nil {
		return fmt.Errorf("no tally read yet")
	}
	return nil
}
