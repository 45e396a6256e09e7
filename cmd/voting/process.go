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

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

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

	servers []*server
	loops   []func(ctx context.Context) error
	// drain runs after the web servers have stopped and before the loops are told to stop:
	// `all` on the in-process queue uses it to let the worker record every accepted vote.
	drain   func(ctx context.Context) error
	closers []func()
}

type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

// newProcess builds the logger, the metrics registry and the tracer provider of a service.
func newProcess(ctx context.Context, service string, opts common, env *cmdEnv) (*process, error) {
	log, err := telemetry.NewLogger(env.stderr, opts.logLevel, opts.logFormat, service)
	if err != nil {
		return nil, err
	}
	reg := telemetry.NewRegistry()
	tp, stopTracing, err := telemetry.NewTracerProvider(ctx, env.getenv, service)
	if err != nil {
		return nil, err
	}
	if env.tracing != nil {
		tp = env.tracing
	}
	p := &process{opts: opts, log: log, reg: reg, metrics: web.NewMetrics(reg), tracer: tp}
	p.onClose(func() {
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
	p.closers = append(p.closers, func() { ln.Close() })
	return nil
}

// loop adds a background loop, stopped after the web servers.
func (p *process) loop(f func(ctx context.Context) error) { p.loops = append(p.loops, f) }

// onClose adds a function run when the process has stopped, after the ones added later.
func (p *process) onClose(f func()) { p.closers = append(p.closers, f) }

// run runs the process until ctx is done or a part of it fails, then stops it in order:
// not ready; wait drain-delay so load balancers stop routing here; stop the web servers,
// letting in-flight requests finish; drain; stop the loops (the worker finishes its batch);
// close the adapters.
func (p *process) run(ctx context.Context) (err error) {
	defer func() {
		for i := len(p.closers) - 1; i >= 0; i-- {
			p.closers[i]()
		}
	}()
	health := web.NewHealth(p.log, p.reg, p.checks...)
	if err := p.listen("admin", p.opts.adminAddr, web.AdminHandler(health, p.reg, p.opts.pprof)); err != nil {
		return err
	}

	failed := make(chan error, len(p.servers)+len(p.loops)+1)
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	var loops sync.WaitGroup
	for _, f := range append([]func(context.Context) error{health.Run}, p.loops...) {
		loops.Go(func() {
			if err := f(loopCtx); err != nil {
				failed <- err
			}
		})
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
	health.SetStopping()
	if err == nil && p.opts.drainDelay > 0 {
		time.Sleep(p.opts.drainDelay)
	}
	stopServing()
	servers.Wait()
	if p.drain != nil {
		dctx, cancel := context.WithTimeout(context.Background(), p.opts.shutdownTimeout)
		if derr := p.drain(dctx); derr != nil {
			p.log.Error("drain", "err", derr)
		}
		cancel()
	}
	stopLoops()
	loops.Wait()
	p.log.Info("stopped")
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
