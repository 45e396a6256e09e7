package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/votingapp/voting/internal/ratelimit"
	"github.com/votingapp/voting/internal/voting"
)

// FuzzSettings parses any command line and environment as `voting all` does (it has every
// service flag). It never panics; when it accepts, the poll is valid and the numbers are not
// negative.
func FuzzSettings(f *testing.F) {
	f.Add("--options=a=Cats,b=Dogs --batch-size=10", "OPTION_A=Tea\nOPTION_B=Coffee")
	f.Add("--max-websockets=-1 --trusted-proxies=10.0.0.0/8", "VOTING_MAX_WEBSOCKETS_PER_CLIENT=5")
	f.Fuzz(func(t *testing.T, args, environ string) {
		vars := map[string]string{}
		for _, line := range strings.Split(environ, "\n") {
			k, v, _ := strings.Cut(line, "=")
			if !strings.HasSuffix(k, "_FILE") { // files are read from disk: not fuzzed here
				vars[k] = v
			}
		}
		env := &cmdEnv{getenv: func(k string) string { return vars[k] }, stdout: io.Discard, stderr: io.Discard}
		s, err := parseSettings("all", "", env, strings.Fields(args),
			(*settings).registerVote, (*settings).registerResult, (*settings).registerRedis,
			(*settings).registerPostgres, (*settings).registerWorker,
			func(s *settings, fs *flag.FlagSet) { fs.StringVar(&s.dataDir, "data-dir", "data", "") })
		if err != nil {
			return
		}
		opts := s.poll
		if len(opts) < 2 || len(opts) > voting.MaxOptions {
			t.Fatalf("args %q env %q: %d options accepted", args, environ, len(opts))
		}
		if _, err := voting.ParseOptions(opts.String()); err != nil {
			t.Fatalf("args %q env %q: accepted options %q that do not parse: %v", args, environ, opts, err)
		}
		if s.batchSize < 0 || s.maxDeliver < 0 || s.maxWebsockets < 0 || s.maxWebsocketsPerClient < 0 {
			t.Fatalf("args %q env %q: a negative batch size, delivery count or WebSocket limit accepted", args, environ)
		}
		if _, err := ratelimit.ParseProxies(s.trustedProxies); err != nil {
			t.Fatalf("args %q env %q: --trusted-proxies %q accepted, then refused: %v", args, environ, s.trustedProxies, err)
		}
	})
}
