package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/votingapp/voting/internal/audit"
	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/voting"
)

func runLoadgen(ctx context.Context, env *cmdEnv, args []string) error {
	var (
		cfg       loadgen.Config
		weights   string
		seed      bool
		asJSON    bool
		quiet     bool
		duration  time.Duration
		cpuprof   string
		votersOut string
		verify    bool
		af        auditFlags
	)
	fs := newFlagSet("loadgen", env, "Cast votes against a vote service and report what it answered.\n--seed casts the original app's seed: 3000 form votes, 2000 for a and 1000 for b,\neach from a new voter. With --ws-url and --ws-clients it also holds WebSocket clients open\non the result service and reports vote → push latency: from each vote's 2xx to the first\nmessage on each client whose total counts it (every vote a new voter; nothing else may vote\nmeanwhile). A progress bar is drawn when stderr is a terminal; the summary goes to stdout.\n\n"+
		"With --verify --result-url URL it then audits the run as `voting audit` does: it waits for\n"+
		"the counts to settle and prints \"cast N, accepted A, counted C, lost L, extra E\"; the exit\n"+
		"code is then the audit's (0: nothing lost or extra; refused and failed votes are allowed).")
	fs.StringVar(&cfg.URL, "url", "http://localhost:8080", "the vote service")
	fs.IntVar(&cfg.Votes, "votes", 1000, "how many votes to cast")
	fs.IntVar(&cfg.Concurrency, "concurrency", 50, "requests in flight at once")
	fs.StringVar(&weights, "weights", "a=1,b=1", "options and their shares, as id=weight,...")
	fs.Float64Var(&cfg.Reuse, "reuse", 0, "share of votes cast by a returning voter (0 to 1)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "votes per second (0: as fast as possible)")
	fs.BoolVar(&cfg.JSON, "api", false, "POST JSON to /api/vote instead of the form to /")
	fs.BoolVar(&cfg.Raw, "raw", false, "use a minimal HTTP/1.1 client (plain http) that costs a fraction of the standard one's CPU, to measure a service on the same machine")
	fs.BoolVar(&seed, "seed", false, "cast the original's seed votes (overrides --votes, --weights, --reuse)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "print no progress")
	fs.DurationVar(&duration, "max-duration", 10*time.Minute, "stop after this long whatever is left")
	fs.StringVar(&cpuprof, "cpuprofile", "", "write the load generator's own CPU profile to this file (to tell its cost from the service's)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "bound on one request")
	fs.StringVar(&cfg.WSURL, "ws-url", "", "the result service, e.g. http://localhost:8081, for --ws-clients")
	fs.IntVar(&cfg.WSClients, "ws-clients", 0, "WebSocket clients to hold open on --ws-url while voting, to measure vote → push latency")
	fs.DurationVar(&cfg.WSWait, "ws-wait", 10*time.Second, "after the last vote, wait this long at most for every client to see the final total")
	fs.StringVar(&cfg.ConnectTo, "connect-to", "", "host:port to connect to for every request, whatever the URLs' host (which still goes in the Host header): a Gateway or Ingress reached by its address")
	fs.DurationVar(&cfg.Retry, "retry", 0, "send a vote again after a 5xx or a failed request, for up to this long, as a person pressing the button again would (0: never)")
	fs.StringVar(&votersOut, "voters-out", "", "write what each voter was told to this `file`, for voting audit: one \"voter_id option\" line per voter whose vote was accepted (its newest), lines for refused votes and votes whose answer was lost, and the baseline when --result-url is given")
	fs.BoolVar(&verify, "verify", false, "after casting, audit the run against --result-url (and --postgres-url or --data-dir, vote by vote): exit 1 when a vote is lost or extra")
	af.register(fs)
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	if verify {
		err := af.check()
		if af.resultURL == "" {
			err = errors.New("--verify needs --result-url: the audit reads /api/results before the first vote and after the last")
		}
		if err != nil {
			return usageError(env, "loadgen", err)
		}
	}
	if seed {
		cfg.Votes, weights, cfg.Reuse = 3000, "a=2,b=1", 0
	}
	ws, err := loadgen.ParseWeights(weights)
	if err != nil {
		return err
	}
	cfg.Weights = ws
	if cfg.Reuse < 0 || cfg.Reuse > 1 {
		return fmt.Errorf("--reuse %v: want 0 to 1", cfg.Reuse)
	}
	if cfg.WSClients > 0 && cfg.WSURL == "" {
		return fmt.Errorf("--ws-clients needs --ws-url")
	}
	// What a voter was told is only exact when its votes were never in flight at once: two
	// concurrent votes of one voter have no order the client could know.
	cfg.SerialVoters = verify || votersOut != ""
	var (
		baseline    *voting.Result
		resultsHTTP = audit.NewClient(cfg.ConnectTo)
		store       audit.Store
		storeName   string
	)
	if verify {
		// Open the store first, so that a wrong URL fails before the votes, not after.
		st, name, closeStore, err := af.openStore(ctx)
		if err != nil {
			return err
		}
		defer closeStore()
		store, storeName = st, name
	}
	if af.resultURL != "" && (verify || votersOut != "") {
		b, err := audit.Results(ctx, resultsHTTP, af.resultURL)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		baseline = b
	}
	parent := ctx // the audit runs after --max-duration, within the caller's time
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	if cpuprof != "" {
		f, err := os.Create(cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var progress func(int)
	var pb *bar
	if !quiet && isTerminal(env.stderr) {
		pb = startBar(env.stderr, cfg.Votes)
		progress = pb.set
	}
	rep, err := loadgen.Run(ctx, cfg, progress)
	if pb != nil {
		pb.stop() // the bar's last state, then its line ends, before the summary
	}
	if rep == nil {
		return err
	}
	told := audit.ToldFrom(rep, baseline)
	if votersOut != "" {
		if werr := audit.WriteFile(votersOut, told); werr != nil {
			return werr
		}
	}
	var outcome *audit.Outcome
	if verify {
		if !asJSON {
			writeSummary(env.stdout, rep) // before the wait for the counts to settle
		}
		o, aerr := audit.Run(parent, told, audit.Config{
			ResultURL: af.resultURL, Client: resultsHTTP,
			Store: store, StoreName: storeName, OthersVote: af.othersVote, Timeout: af.timeout,
		})
		if aerr != nil {
			return fmt.Errorf("verify: %w", aerr)
		}
		outcome = o
	}
	switch {
	case asJSON:
		// One object: the report, and the audit under "audit".
		out := struct {
			*loadgen.Report
			Audit *audit.Outcome `json:"audit,omitempty"`
		}{rep, outcome}
		if jerr := json.NewEncoder(env.stdout).Encode(out); jerr != nil {
			return jerr
		}
	case outcome != nil:
		outcome.WriteText(env.stdout)
	default:
		writeSummary(env.stdout, rep)
	}
	if verify {
		// The verdict is the audit's: refused and failed votes are what a drill expects,
		// and the contract allows them. A run that got nothing accepted proves nothing.
		if err := verdict(outcome); err != nil {
			return err
		}
		if rep.Accepted == 0 {
			return fmt.Errorf("no vote accepted (%d sent, answers %v): nothing verified", rep.Sent, rep.ByStatus)
		}
		return err
	}
	if err != nil {
		return err
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d of %d votes failed", rep.Failed, rep.Sent)
	}
	return nil
}

// writeSummary prints the report for people.
func writeSummary(w io.Writer, rep *loadgen.Report) {
	fmt.Fprintf(w, "votes    %d sent, %d accepted, %d failed in %s: %.0f votes/s\n", rep.Sent, rep.Accepted, rep.Failed, rep.Duration.Round(time.Millisecond), rep.Rate)
	fmt.Fprintf(w, "options  %s\n", counts(rep.AcceptedByOption))
	fmt.Fprintf(w, "answers  %s\n", counts(rep.ByStatus))
	fmt.Fprintf(w, "latency  p50 %s  p95 %s  p99 %s  max %s\n", ms(rep.P50), ms(rep.P95), ms(rep.P99), ms(rep.Max))
	if rep.Retried > 0 {
		fmt.Fprintf(w, "retried  %d\n", rep.Retried)
	}
	if rep.FirstError != "" {
		fmt.Fprintf(w, "error    %s (the first)\n", rep.FirstError)
	}
	if p := rep.Push; p != nil {
		fmt.Fprintf(w, "push     %d WebSocket clients (%d still connected), %d saw the final total %d (from %d) within %s of the last vote\n",
			p.Clients, p.Connected, p.GotFinal, p.Final, p.BaseTotal, ms(p.LastFinal))
		fmt.Fprintf(w, "push     vote → push p50 %s  p95 %s  p99 %s  max %s over %d samples (%d messages, %d missed)\n",
			ms(p.P50), ms(p.P95), ms(p.P99), ms(p.Max), p.Samples, p.Messages, p.Missed)
		if p.Error != "" {
			fmt.Fprintf(w, "push     error %s (the first)\n", p.Error)
		}
	}
}

// counts prints a map as "k=v k=v", sorted by key.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// ms prints a duration in milliseconds with three decimals, so columns compare at a glance.
func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }

// isTerminal reports whether w is a character device (a terminal), without a dependency:
// piped or redirected output gets no progress bar, only the summary.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// bar draws a progress bar on a terminal, redrawn at most ten times a second so that drawing
// costs nothing next to the votes.
type bar struct {
	w     io.Writer
	total int
	start time.Time
	done  atomic.Int64
	quit  chan struct{}
	wg    sync.WaitGroup
}

func startBar(w io.Writer, total int) *bar {
	b := &bar{w: w, total: total, start: time.Now(), quit: make(chan struct{})}
	b.wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.quit:
				b.draw()
				fmt.Fprintln(b.w)
				return
			case <-t.C:
				b.draw()
			}
		}
	})
	return b
}

// set records the votes done.
func (b *bar) set(done int) { b.done.Store(int64(done)) }

// stop draws the bar a last time and ends its line.
func (b *bar) stop() {
	close(b.quit)
	b.wg.Wait()
}

func (b *bar) draw() {
	const width = 30
	done := int(b.done.Load())
	filled := width * done / max(b.total, 1)
	rate := float64(done) / max(time.Since(b.start).Seconds(), 1e-9)
	fmt.Fprintf(b.w, "\r[%s%s] %d/%d votes %3d%% %6.0f/s ", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		done, b.total, 100*done/max(b.total, 1), rate)
}
