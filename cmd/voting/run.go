package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// command is one subcommand: its name, its one-line summary and the function that runs it.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cmdEnv, args []string) error
}

// cmdEnv is what a subcommand gets from the outside world; tests give their own.
type cmdEnv struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	// tracing, when set, replaces the tracer provider the OTEL_* variables would make, so
	// a test can see the spans.
	tracing trace.TracerProvider
}

// commands are the subcommands, in the order the usage lists them.
func commands() []command {
	return []command{
		{"vote", "serve the voting page (needs Redis)", runVote},
		{"worker", "move votes from the queue into the store (needs Redis and PostgreSQL)", runWorker},
		{"result", "serve the live results page (needs PostgreSQL)", runResult},
		{"all", "run vote, worker and result in one process (embedded SQLite and queue by default)", runAll},
		{"migrate", "apply the database migrations and exit", runMigrate},
		{"healthcheck", "GET a URL and exit 0 on a 2xx answer (for images without curl)", runHealthcheck},
		{"loadgen", "cast votes against a vote service (--seed: the original's 3000 votes; --verify: then audit them)", runLoadgen},
		{"audit", "compare what a loadgen run's voters were told with /api/results and the store", runAudit},
		{"doctor", "check each hop (vote, Redis, worker, PostgreSQL, result) from here and explain the broken ones", runDoctor},
		{"version", "print the version", runVersion},
	}
}

// run is the whole program behind main, so that tests can run it with their own arguments,
// environment and output. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, &cmdEnv{getenv: getenv, stdout: stdout, stderr: stderr})
}

// runWith is run with the whole cmdEnv given, for tests that set its tracing.
func runWith(ctx context.Context, args []string, env *cmdEnv) int {
	stderr := env.stderr
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		usage(stderr)
		if len(args) < 2 {
			return 2
		}
		return 0
	}
	cmds := commands()
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[1] })
	if i < 0 {
		fmt.Fprintf(stderr, "voting: unknown command %q\n\n", args[1])
		usage(stderr)
		return 2
	}
	err := cmds[i].run(ctx, env, args[2:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "voting %s: %v\n", args[1], err)
		return 1
	}
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("voting: the example voting app in one binary.\n\nUsage: voting <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'voting <command> -h' for the command's flags. Every flag can also be set by an\nenvironment variable: VOTING_ and the flag's name in upper snake case (--redis-url is\nVOTING_REDIS_URL). Secrets can be read from a file named by the variable with _FILE.\n")
	fmt.Fprint(w, b.String())
}
