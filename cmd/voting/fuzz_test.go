package main

import (
	"io"
	"strings"
	"testing"

	"github.com/votingapp/voting/internal/ratelimit"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// FuzzSettings parses any command line and environment as `voting all` does (it has every
// service flag). It never panics; when it accepts, the poll is valid and the numbers are not
// negative.
func FuzzSettings(f *testing.F) {
	f.Add("--options=a=Cats,b=Dogs --batch-size=10", "OPTION_A=Tea\nOPTION_B=Coffee")
	f.Add("--max-websockets=-1 --trusted-proxies=10.0.0.0/8", "VOTING_MAX_WEBSOCKETS_PER_CLIENT=5")
	f.Add("--version-label=v2 --accent-color=#0a7d4f", "VOTING_ACCENT_COLOR=red;}\nVOTING_VERSION_LABEL=x\ty")
	f.Fuzz(func(t *testing.T, args, environ string) {
		vars := map[string]string{}
		for _, line := range strings.Split(environ, "\n") {
			k, v, _ := strings.Cut(line, "=")
			if !strings.HasSuffix(k, "_FILE") { // files are read from disk: not fuzzed here
				vars[k] = v
			}
		}
		env := &cmdEnv{getenv: func(k string) string { return vars[k] }, stdout: io.Discard, stderr: io.Discard}
		var c allConfig
		if err := parseConfig("all", "", env, strings.Fields(args), &c); err != nil {
			return
		}
		for _, opts := range []voting.Options{c.vote.cfg.Options, c.result.cfg.Options} {
			if len(opts) < 2 || len(opts) > voting.MaxOptions {
				t.Fatalf("args %q env %q: %d options accepted", args, environ, len(opts))
			}
			if _, err := voting.ParseOptions(opts.String()); err != nil {
				t.Fatalf("args %q env %q: accepted options %q that do not parse: %v", args, environ, opts, err)
			}
		}
		if c.worker.cfg.BatchSize < 0 || c.worker.delivery.maxDeliveries < 0 || c.result.cfg.MaxClients < 0 || c.result.cfg.MaxClientsPerAddr < 0 {
			t.Fatalf("args %q env %q: a negative batch size, delivery count or WebSocket limit accepted", args, environ)
		}
		if c.vote.cfg.RateLimit < 0 || c.vote.cfg.RateLimit > 0 && c.vote.cfg.RateBurst < 1 {
			t.Fatalf("args %q env %q: rate limit %g with burst %d accepted", args, environ, c.vote.cfg.RateLimit, c.vote.cfg.RateBurst)
		}
		// The label goes into a header and the colour into a stylesheet: what is accepted is
		// printable ASCII and a hex colour, nothing else.
		for _, cfg := range [][2]string{{c.vote.cfg.VersionLabel, c.vote.cfg.AccentColor}, {c.result.cfg.VersionLabel, c.result.cfg.AccentColor}} {
			hex, err := web.ParseAccentColor(cfg[1])
			if web.CheckVersionLabel(cfg[0]) != nil || err != nil || strings.Trim(hex, "#0123456789abcdef") != "" {
				t.Fatalf("args %q env %q: accepted version label %q and colour %q (%q, %v)", args, environ, cfg[0], cfg[1], hex, err)
			}
		}
		if _, err := ratelimit.ParseProxies(c.vote.cfg.Proxies.String()); err != nil {
			t.Fatalf("args %q env %q: trusted proxies %q accepted, then refused: %v", args, environ, c.vote.cfg.Proxies, err)
		}
	})
}
