package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/result"
)

// resultFlags are the result service's own flags, parsed into its Config (result and all).
type resultFlags struct {
	cfg    result.Config
	addr   string
	faults fault.Flags
}

func (f *resultFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "result-addr", ":8081", "address of the results page")
	fs.DurationVar(&f.cfg.PollInterval, "poll-interval", 5*time.Second, "how often result reads the tally when the store signalled no change (a safety net: changes are pushed within milliseconds)")
	// 10,000 is the benchmarked target (docs/performance.md: 79 MB RSS, inside the 128 MiB
	// limit of the deployments); 1,000 from one address leaves room for a big NAT, and
	// takes ten addresses to fill a process.
	fs.IntVar(&f.cfg.MaxClients, "max-websockets", 10000, "most WebSocket clients result serves at once; more are answered 503 (0: no limit)")
	f.faults = fault.Flags{}
	f.faults.Register(fs, result.Faults...)
	fs.IntVar(&f.cfg.MaxClientsPerAddr, "max-websockets-per-client", 1000, "most WebSocket clients result serves at once from one client address (IPv4 address or IPv6 /64; behind a proxy, list it in --trusted-proxies); more are answered 503 (0: no limit)")
}

// resultConfig is `voting result`'s configuration.
type resultConfig struct {
	common
	page     pageFlags
	result   resultFlags
	postgres postgresFlags
}

func (c *resultConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	c.page.register(fs)
	c.result.register(fs)
	c.postgres.register(fs)
}

func (c *resultConfig) resolve(env *cmdEnv) error {
	opts, proxies, pageErr := c.page.resolve(env)
	c.result.cfg.Options, c.result.cfg.ClientAddr = opts, proxies.ClientIP
	c.result.cfg.VersionLabel, c.result.cfg.AccentColor = c.page.versionLabel, c.page.accentColor
	return errors.Join(pageErr, requireURL("result", "postgres-url", c.postgres.url, "the PostgreSQL store"), c.result.cfg.Validate())
}

func runResult(ctx context.Context, env *cmdEnv, args []string) error {
	var c resultConfig
	if err := parseConfig("result", "Serve the live results page from PostgreSQL.", env, args, &c); err != nil {
		return err
	}
	p, err := newProcess(ctx, "result", c.common, c.page.rollout(), env)
	if err != nil {
		return err
	}
	p.log.Info("starting", "postgres_url", maskURL(c.postgres.url), "result", c.result.cfg)
	st, err := openPGStore(ctx, p, c.postgres.url)
	if err != nil {
		return err
	}
	if err := addResult(p, c.result, st); err != nil {
		return err
	}
	return p.run(ctx)
}

// addResult adds the result service to p: its readiness (a first tally read), its loop and
// its listener.
func addResult(p *process, f resultFlags, st result.Store) error {
	if err := p.faults.Add(f.faults, result.Faults...); err != nil {
		return err
	}
	cfg := f.cfg
	cfg.Instance, cfg.Tracer, cfg.Faults = instance(), p.tracerFor("result"), p.faults
	svc, err := result.New(cfg, st, p.log, p.reg)
	if err != nil {
		return err
	}
	p.check("tally", svc.Ready)
	p.loop("the result service (closing its WebSockets)", svc.Run)
	return p.serve("result", f.addr, svc.Handler())
}
