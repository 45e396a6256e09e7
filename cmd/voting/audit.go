package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/votingapp/voting/internal/audit"
	"github.com/votingapp/voting/internal/pgstore"
)

// auditFlags say where the audit reads the deployment: `voting audit`'s and `voting loadgen
// --verify`'s. The store is chosen as `voting all` chooses it, with the same flags and
// variables (--postgres-url, with its _FILE secret, else --data-dir), so a deployment's own
// settings point the audit at its store; a generic --store-url would be one more spelling of
// what those two already say.
type auditFlags struct {
	resultURL  string
	postgres   postgresFlags
	dataDir    string
	timeout    time.Duration
	othersVote bool
}

func (f *auditFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.resultURL, "result-url", "", "the result service, e.g. http://localhost:8081: its /api/results is compared with the baseline read before the first vote")
	f.postgres.register(fs)
	fs.StringVar(&f.dataDir, "data-dir", "", "the data `directory` of voting all on SQLite, to read its store vote by vote (read only; used when --postgres-url is empty)")
	fs.DurationVar(&f.timeout, "verify-timeout", 2*time.Minute, "how long to wait for the counts to settle (the worker records votes after they were accepted) before the verdict")
	fs.BoolVar(&f.othersVote, "others-vote", false, "others may vote meanwhile: judge by the store alone and report /api/results without judging it (needs --postgres-url or --data-dir)")
}

// hasStore reports whether a store was named.
func (f *auditFlags) hasStore() bool { return f.postgres.url != "" || f.dataDir != "" }

// check reports what makes the flags unusable for an audit.
func (f *auditFlags) check() error {
	if f.othersVote && !f.hasStore() {
		return errors.New("--others-vote needs --postgres-url or --data-dir: with others voting, /api/results alone can tell nothing")
	}
	if f.timeout < 0 {
		return fmt.Errorf("--verify-timeout %v must not be negative", f.timeout)
	}
	return nil
}

// openStore opens the store named by the flags to read it, or returns nil when none is.
func (f *auditFlags) openStore(ctx context.Context) (st audit.Store, name string, closeStore func(), err error) {
	switch {
	case f.postgres.url != "":
		pg, err := pgstore.New(ctx, f.postgres.url)
		if err != nil {
			return nil, "", nil, err
		}
		return pg, "postgres", pg.Close, nil
	case f.dataDir != "":
		lite, err := openEmbeddedReader(ctx, f.dataDir)
		if err != nil {
			return nil, "", nil, err
		}
		return lite, "sqlite in " + f.dataDir, func() { lite.Close() }, nil
	}
	return nil, "", func() {}, nil
}

// embeddedReader is the SQLite store opened to be read (embedded.go), which a build with
// -tags nosqlite leaves out (embedded_nosqlite.go).
type embeddedReader interface {
	audit.Store
	Close() error
}

// verdict returns nil when the outcome is what the contract allows, else an error saying
// why (exit 1).
func verdict(o *audit.Outcome) error {
	if o.OK {
		return nil
	}
	return fmt.Errorf("lost %d, extra %d: the contract allows neither", o.Lost, o.Extra)
}

// usageError prints msg as a usage error of the command and returns errUsage (exit 2).
func usageError(env *cmdEnv, cmd string, err error) error {
	fmt.Fprintf(env.stderr, "voting %s: %v\n", cmd, err)
	return errUsage
}

func runAudit(ctx context.Context, env *cmdEnv, args []string) error {
	var (
		f         auditFlags
		voters    string
		connectTo string
		asJSON    bool
	)
	fs := newFlagSet("audit", env, "Compare what the voters of an earlier `voting loadgen --voters-out FILE` run were told\n"+
		"with what the deployment shows now: /api/results against the baseline in FILE (loadgen\n"+
		"records it when given --result-url) and, with --postgres-url or --data-dir, each voter's\n"+
		"stored vote. Prints \"cast N, accepted A, counted C, lost L, extra E\", then how it was\n"+
		"reached and the first lost and extra votes. Exit 0 when nothing is lost or extra, 1 when\n"+
		"something is (or the deployment cannot be read), 2 on a usage error.")
	fs.StringVar(&voters, "voters", "", "the voters `file` written by voting loadgen --voters-out")
	f.register(fs)
	fs.StringVar(&connectTo, "connect-to", "", "host:port to connect to for --result-url, whatever its host (which still goes in the Host header): a Gateway reached by its address")
	fs.BoolVar(&asJSON, "json", false, "print the outcome as JSON")
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	switch {
	case voters == "":
		return usageError(env, "audit", errors.New("--voters is required: the file `voting loadgen --voters-out` wrote"))
	case f.resultURL == "" && !f.hasStore():
		return usageError(env, "audit", errors.New("nothing to compare with: give --result-url, --postgres-url or --data-dir"))
	}
	if err := f.check(); err != nil {
		return usageError(env, "audit", err)
	}
	told, err := audit.ReadFile(voters)
	if err != nil {
		return err
	}
	if !f.hasStore() && told.Baseline == nil {
		return usageError(env, "audit", fmt.Errorf("%s has no baseline (loadgen ran without --result-url): /api/results alone cannot be compared; give --postgres-url or --data-dir", voters))
	}
	st, name, closeStore, err := f.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	o, err := audit.Run(ctx, told, audit.Config{
		ResultURL: f.resultURL, Client: audit.NewClient(connectTo),
		Store: st, StoreName: name, OthersVote: f.othersVote, Timeout: f.timeout,
	})
	if err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(env.stdout).Encode(o); err != nil {
			return err
		}
	} else {
		o.WriteText(env.stdout)
	}
	return verdict(o)
}
