// Package web is the HTTP plumbing shared by the services: the admin listener with health
// and metrics, middleware, JSON and error helpers, and serving with graceful shutdown. It
// knows nothing about votes beyond the domain errors it maps to statuses.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one dependency that readiness depends on.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Health runs the readiness checks in the background and serves /livez and /readyz.
// Probes read the last result instead of running the checks, so a burst of probes never
// becomes a burst of queries against Redis or PostgreSQL, and a change of state is logged
// once, with the dependency's name and error.
type Health struct {
	checks   []Check
	log      *slog.Logger
	interval time.Duration
	timeout  time.Duration

	stopping atomic.Bool
	mu       sync.RWMutex
	status   map[string]string // check name -> "ok" or the error text
	checked  bool
	up       *prometheus.GaugeVec
}

// NewHealth returns a Health for the checks. The interval and timeout are those of the
// background checks: 2 s and 1 s keep a dead dependency noticed within about 3 s, well inside
// a Kubernetes readiness probe's period, without loading the servers.
func NewHealth(log *slog.Logger, reg prometheus.Registerer, checks ...Check) *Health {
	h := &Health{
		checks: checks, log: log, interval: 2 * time.Second, timeout: time.Second,
		status: map[string]string{},
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "voting_dependency_up",
			Help: "1 when the last readiness check of the dependency passed, 0 otherwise.",
		}, []string{"dependency"}),
	}
	reg.MustRegister(h.up)
	return h
}

// Run checks the dependencies now and then every interval until ctx is done. While not
// ready it checks four times as often, so a process that is starting, or whose dependency is
// back, turns ready within a fraction of a second instead of a whole interval.
func (h *Health) Run(ctx context.Context) error {
	for {
		h.checkNow(ctx)
		wait := h.interval
		if ok, _, _ := h.report(); !ok {
			wait /= 4
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// checkNow runs every check once, concurrently, and records the results.
func (h *Health) checkNow(ctx context.Context) {
	results := make([]string, len(h.checks))
	var wg sync.WaitGroup
	for i, c := range h.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, h.timeout)
			defer cancel()
			results[i] = "ok"
			if err := c.Func(cctx); err != nil {
				results[i] = err.Error()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // the process is stopping; a cancelled check says nothing about the dependency
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range h.checks {
		prev, seen := h.status[c.Name]
		now := results[i]
		h.status[c.Name] = now
		v := 0.0
		if now == "ok" {
			v = 1
		}
		h.up.WithLabelValues(c.Name).Set(v)
		switch {
		case now != "ok" && prev != now:
			h.log.Error("dependency not ready", "dependency", c.Name, "err", now)
		case now == "ok" && seen && prev != "ok":
			h.log.Info("dependency ready again", "dependency", c.Name)
		}
	}
	h.checked = true
}

// SetStopping makes readiness fail from now on: the first step of a graceful shutdown, so
// load balancers stop sending traffic before the listeners close.
func (h *Health) SetStopping() { h.stopping.Store(true) }

// report returns whether the process is ready, whether the checks have run yet, and each
// check's state.
func (h *Health) report() (ok, checked bool, checks map[string]string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	checks = make(map[string]string, len(h.status))
	ok = h.checked && !h.stopping.Load()
	for k, v := range h.status {
		checks[k] = v
		ok = ok && v == "ok"
	}
	return ok, h.checked, checks
}

// serveReadyz answers 200 or 503 with each check's state, so an operator can see which
// dependency is down.
func (h *Health) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	ok, checked, checks := h.report()
	body := struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}{Status: "ok", Checks: checks}
	status := http.StatusOK
	switch {
	case h.stopping.Load():
		body.Status, status = "stopping", http.StatusServiceUnavailable
	case !checked:
		body.Status, status = "starting", http.StatusServiceUnavailable
	case !ok:
		body.Status, status = "unavailable", http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, status, body)
}

// AdminHandler returns the admin listener's routes: /livez (the process answers; never
// checks dependencies, so an outage of Redis does not turn into a restart loop), /readyz,
// /metrics, /debug/pprof/ when pprofOn is set, and more (the drill faults' /faults). It is its
// own mux: nothing is ever put on http.DefaultServeMux, and the public ports serve only the
// app.
func AdminHandler(h *Health, gatherer prometheus.Gatherer, pprofOn bool, more map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	for pattern, handler := range more {
		mux.Handle(pattern, handler)
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", h.serveReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
