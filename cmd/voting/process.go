package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/web"
)

// process is one running service (or all of them): its logger, metrics and health, its
// listeners, its background loops, and what must happen, in order, when it stops.
type process struct {
	opts    common
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *web.Metrics
	queue   *telemetry.QueueMetrics // nil in processes without a queue
	tracer  trace.TracerProvider
	checks  []web.Check
	faults  *fault.Set // the drill faults of the process's services, on the admin port's /faults

	servers []*server
	loops   []namedLoop
	// drain runs after the web servers have stopped and before the loops are told to stop:
	// `all` on the in-process queue uses it to let the worker record every accepted vote.
	drain   func(ctx context.Context) error
	closers []closer
}

// namedLoop is a background loop and what the log calls it while the process waits for it.
type namedLoop struct {
	name string
	run  func(ctx context.Context) error
}

// closer is a function run when the process stops, and what the log calls it.
type closer struct {
	name  string
	close func()
}

type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

// newProcess builds the logger, the metrics registry and the tracer provider of a service;
// rollout is what its voting_build_info says of the version (empty for the worker).
func newProcess(ctx context.Context, service string, opts common, rollout telemetry.Rollout, env *cmdEnv) (*process, error) {
	log, err := telemetry.NewLogger(env.stderr, opts.logLevel, opts.logFormat, service)
	if err != nil {
		return nil, err
	}
	setMemoryLimit(log, memlimit.FromCgroup)
	reg := telemetry.NewRegistry(rollout)
	tp, stopTracing, err := telemetry.NewTracerProvider(ctx, env.getenv, service)
	if err != nil {
		return nil, err
	}
	if env.tracing != nil {
		tp = env.tracing
	}
	p := &process{opts: opts, log: log, reg: reg, metrics: web.NewMetrics(reg), tracer: tp, faults: fault.NewSet(log, reg)}
	p.onClose("the trace exporter (sending the last spans to the collector)", func() {
		// Flush the spans still buffered; an unreachable collector must not hold up exit.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	})
	if telemetry.TracingEnabled(env.getenv) {
		log.Info("tracing on")
		// Export errors reach the SDK's global handler, which prints plain lines to stderr:
		// route them into the service's structured log instead.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("export traces", "err", err) }))
	}
	return p, nil
}

// tracerFor returns the tracer of a package of this module.
func (p *process) tracerFor(pkg string) trace.Tracer {
	return p.tracer.Tracer("github.com/votingapp/voting/internal/" + pkg)
}

// queueMetrics returns the process's queue metrics, registering them on first use.
func (p *process) queueMetrics() *telemetry.QueueMetrics {
	if p.queue == nil {
		p.queue = telemetry.NewQueueMetrics(p.reg)
	}
	return p.queue
}

// check adds a readiness check.
func (p *process) check(name string, f func(context.Context) error) {
	p.checks = append(p.checks, web.Check{Name: name, Func: f})
}

// serve adds a public web server for h, with the middleware every public route gets. It
// listens at once, so a port in use fails the start.
func (p *process) serve(name, addr string, h http.Handler) error {
	h = web.Instrument(name, p.log, p.metrics, p.tracerFor("web"), web.SecurityHeaders(h))
	return p.listen(name, addr, h)
}

func (p *process) listen(name, addr string, h http.Handler) error {
	srv := web.NewServer(addr, h, p.log)
	ln, err := web.Listen(srv)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p.servers = append(p.servers, &server{name: name, srv: srv, ln: ln})
	p.onClose(name+" listener", func() { ln.Close() })
	return nil
}

// loop adds a background loop, stopped after the web servers; name is what the log calls it
// if the process has to wait for it.
func (p *process) loop(name string, f func(ctx context.Context) error) {
	p.loops = append(p.loops, namedLoop{name, f})
}

// onClose adds a function run when the process stops, after the ones added later; name is
// what the log calls it if the process has to wait for it.
func (p *process) onClose(name string, f func()) { p.closers = append(p.closers, closer{name, f}) }

// slowStep is how long a step of stopping may take before the log says what the process is
// waiting for: a person watching a process that has not exited yet should not have to guess
// (a collector that does not answer holds the trace flush for up to 5 s, a worker's batch
// the --shutdown-timeout).
const slowStep = 250 * time.Millisecond

// waitLogged runs step; if it takes longer than slowStep, the log says, while it runs, that
// the process waits for what, and then how long it took.
func (p *process) waitLogged(what string, step func()) {
	start := time.Now()
	t := time.AfterFunc(slowStep, func() { p.log.Info("stopping: waiting", "for", what) })
	step()
	if !t.Stop() {
		p.log.Info("stopping: done waiting", "for", what, "took", time.Since(start).Round(time.Millisecond))
	}
}

// run runs the process until ctx is done or a part of it fails, then stops it in order:
// not ready; wait drain-delay so load balancers stop routing here; stop the web servers,
// letting in-flight requests finish; drain; stop the loops (the worker finishes its batch);
// close the adapters.
//
// "stopped" is the last line it logs, after everything it waits for: the process exits right
// after it (a binary built with -race waits 1 s more at exit, the race detector's own
// atexit_sleep_ms; GORACE=atexit_sleep_ms=0 removes it).
func (p *process) run(ctx context.Context) (err error) {
	stopping := false
	defer func() {
		for i := len(p.closers) - 1; i >= 0; i-- {
			p.waitLogged(p.closers[i].name, p.closers[i].close)
		}
		if stopping {
			p.log.Info("stopped")
		}
	}()
	health := web.NewHealth(p.log, p.reg, p.checks...)
	if err := p.listen("admin", p.opts.adminAddr, web.AdminHandler(health, p.reg, p.opts.pprof, map[string]http.Handler{"/faults": p.faults.Handler()})); err != nil {
		return err
	}

	failed := make(chan error, len(p.servers)+len(p.loops)+1)
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	loops := make([]chan struct{}, 0, len(p.loops)+1)
	for _, l := range append([]namedLoop{{"readiness checks", health.Run}}, p.loops...) {
		done := make(chan struct{})
		loops = append(loops, done)
		go func() {
			defer close(done)
			if err := l.run(loopCtx); err != nil {
				failed <- err
			}
		}()
	}
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	var servers sync.WaitGroup
	for _, s := range p.servers {
		p.log.Info("listening", "server", s.name, "addr", s.ln.Addr().String())
		servers.Go(func() {
			if err := web.Serve(serveCtx, s.srv, s.ln, p.opts.shutdownTimeout); err != nil {
				failed <- fmt.Errorf("%s server: %w", s.name, err)
			}
		})
	}

	select {
	case <-ctx.Done():
		p.log.Info("stopping", "drain_delay", p.opts.drainDelay)
	case err = <-failed:
		p.log.Error("stopping after a failure", "err", err)
	}
	stopping = true
	health.SetStopping()
	if err == nil && p.opts.drainDelay > 0 {
		time.Sleep(p.opts.drainDelay)
	}
	stopServing()
	p.waitLogged("requests in flight", servers.Wait)
	if p.drain != nil {
		p.waitLogged("the in-process queue to drain into the store", func() {
			dctx, cancel := context.WithTimeout(context.Background(), p.opts.shutdownTimeout)
			defer cancel()
			if derr := p.drain(dctx); derr != nil {
				p.log.Error("drain", "err", derr)
			}
		})
	}
	stopLoops()
	for i, done := range loops {
		name := "readiness checks"
		if i > 0 {
			name = p.loops[i-1].name
		}
		p.waitLogged(name, func() { <-done })
	}
	return err
}

// instance names this process on the pages, as the original shows the container id.
func instance() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// consumerName names this worker in the Redis consumer group: the host name (the pod name
// in Kubernetes) and the process id, so two workers on one host stay apart.
func consumerName() string {
	return fmt.Sprintf("%s-%d", instance(), os.Getpid())
}
