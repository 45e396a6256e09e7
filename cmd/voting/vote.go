package main

import (
	"context"
	"errors"
	"flag"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
)

// voteFlags are the vote service's own flags, parsed into its Config (vote and all).
type voteFlags struct {
	cfg     vote.Config
	addr    string
	keyFile string
	faults  fault.Flags
}

func (f *voteFlags) register(fs *flag.FlagSet) {
	f.faults = fault.Flags{}
	f.faults.Register(fs, vote.Faults...)
	fs.StringVar(&f.addr, "vote-addr", ":8080", "address of the voting page")
	fs.Float64Var(&f.cfg.RateLimit, "rate-limit", 0, "votes per second allowed from one client address after --rate-burst at once; 0: no limit (set it for public demos)")
	fs.IntVar(&f.cfg.RateBurst, "rate-burst", 10, "votes one client address may cast at once before --rate-limit applies")
	fs.StringVar(&f.keyFile, "voter-key-file", "", "file of the keys that sign voter ids, one a line: the first signs, each verifies (add the new key second, then move it first, to rotate); every vote replica needs the same file. Required by vote; all keeps a generated one in --data-dir when unset")
}

// voteConfig is `voting vote`'s configuration.
type voteConfig struct {
	common
	page  pageFlags
	vote  voteFlags
	redis redisFlags
}

func (c *voteConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	c.page.register(fs)
	c.vote.register(fs)
	c.redis.register(fs)
}

func (c *voteConfig) resolve(env *cmdEnv) error {
	opts, proxies, pageErr := c.page.resolve(env)
	c.vote.cfg.Options, c.vote.cfg.Proxies = opts, proxies
	c.vote.cfg.VersionLabel, c.vote.cfg.AccentColor = c.page.versionLabel, c.page.accentColor
	var keyErr error
	if c.vote.keyFile == "" {
		keyErr = errNoVoterKey
	}
	return errors.Join(pageErr, requireURL("vote", "redis-url", c.redis.url, "the Redis queue"), keyErr, c.vote.cfg.Validate())
}

func runVote(ctx context.Context, env *cmdEnv, args []string) error {
	var c voteConfig
	if err := parseConfig("vote", "Serve the voting page; votes go to the Redis queue.", env, args, &c); err != nil {
		return err
	}
	p, err := newProcess(ctx, "vote", c.common, c.page.rollout(), env)
	if err != nil {
		return err
	}
	p.log.Info("starting", "redis_url", maskURL(c.redis.url), "vote", c.vote.cfg)
	q, err := openRedisQueue(ctx, p, c.redis, deliveryFlags{})
	if err != nil {
		return err
	}
	if err := addVote(p, c.vote, "", q); err != nil {
		return err
	}
	return p.run(ctx)
}

// addVote adds the vote service to p: its voter keys (from the key file, or kept in dataDir
// by `voting all`), and its listener.
func addVote(p *process, f voteFlags, dataDir string, pub voting.Publisher) error {
	keys, err := voterKeys(p, f.keyFile, dataDir)
	if err != nil {
		return err
	}
	if err := p.faults.Add(f.faults, vote.Faults...); err != nil {
		return err
	}
	cfg := f.cfg
	cfg.Instance, cfg.Tracer, cfg.VoterKeys, cfg.Faults = instance(), p.tracerFor("vote"), keys, p.faults
	svc, err := vote.New(cfg, pub, p.log, p.reg)
	if err != nil {
		return err
	}
	return p.serve("vote", f.addr, svc.Handler())
}
