// Package audit checks conservation: it compares what the voters of a load run were told
// (which option, accepted or not) with what the deployment shows, from the totals of
// /api/results against a baseline read before the run and, given the store, from each of the
// run's voters' stored vote. It is the check behind `voting loadgen --verify` and `voting
// audit`, what a chaos drill ends with.
//
// The contract it holds the deployment to (docs/reliability.md): every voter whose vote was
// accepted (2xx) is counted once, for its newest accepted vote; a refused vote (4xx) is never
// counted; a vote whose answer was lost (5xx, a broken connection, a timeout) may be counted
// or not. It only reads: the store through the small Store interface (cmd/voting opens the
// real one), the result service over HTTP.
package audit

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/voting"
)

// Told is what the voters of a run were told, and what the deployment showed before it.
// Voters are named by their id in the store (the part of the voter cookie before its first
// dot; loadgen.Report names them so).
type Told struct {
	// Cast counts the votes sent, each once whatever its retries; AcceptedVotes,
	// RefusedVotes and FailedVotes split them by the last answer: 2xx, another answer below
	// 500, and a 5xx or no answer at all.
	Cast, AcceptedVotes, RefusedVotes, FailedVotes int
	// Final is each voter's newest accepted vote: what must be counted.
	Final map[string]string
	// Unknown is, per voter, the options of its votes after its newest accepted one (or of
	// all its votes, if none was accepted) whose answer was lost: the store may hold one of
	// them instead.
	Unknown map[string][]string
	// Refused is, per voter, the options of its votes refused after its newest accepted one.
	Refused map[string][]string
	// UnknownNoID counts the votes whose answer was lost before the service told the voter
	// its id: each may be a stored vote no one can name.
	UnknownNoID int
	// Baseline is /api/results read before the first vote; nil when it was not read.
	Baseline *voting.Result
	// NoRunLine is set by ReadFile when the file has only voter lines (a list written by
	// hand, or by psql): Cast and the vote counts are then those of the accepted voters.
	NoRunLine bool `json:"-"`
}

// ToldFrom returns what the run of rep told its voters, with the baseline read before it.
func ToldFrom(rep *loadgen.Report, baseline *voting.Result) *Told {
	t := &Told{
		Cast: rep.Sent, AcceptedVotes: rep.Accepted,
		Final: maps.Clone(rep.Final), Unknown: map[string][]string{}, Refused: map[string][]string{},
		Baseline: baseline,
	}
	for status, n := range rep.ByStatus {
		var code int
		if _, err := fmt.Sscan(status, &code); err == nil && code < 500 && (code < 200 || code > 299) {
			t.RefusedVotes += n
		}
	}
	t.FailedVotes = rep.Failed - t.RefusedVotes
	for v, os := range rep.Unsure {
		t.Unknown[v] = uniq(os)
	}
	for v, os := range rep.Refused {
		t.Refused[v] = uniq(os)
	}
	// loadgen counts in UnsureNew both the votes of voters it was never told an id for and
	// the voters it was told an id for but whose votes all had their answer lost; the
	// second are in Unsure by name, and checked by name.
	t.UnknownNoID = rep.UnsureNew
	for v, os := range rep.Unsure {
		if _, ok := rep.Final[v]; !ok && len(os) > 0 {
			t.UnknownNoID--
		}
	}
	t.UnknownNoID = max(t.UnknownNoID, 0)
	return t
}

// Voters returns the ids of every voter the run was told an id for, sorted: the ones the
// store is read for.
func (t *Told) Voters() []string {
	set := map[string]bool{}
	for _, m := range []map[string][]string{t.Unknown, t.Refused} {
		for v := range m {
			set[v] = true
		}
	}
	for v := range t.Final {
		set[v] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// uniq returns the distinct strings of s, sorted.
func uniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Outcome is the audit's verdict and how it was reached.
type Outcome struct {
	// Cast is the votes sent. Accepted is the voters with an accepted vote: each must be
	// counted once, for its newest accepted vote (a voter who voted again replaced its
	// vote; with every vote a new voter's, Accepted is the votes accepted).
	Cast     int `json:"cast"`
	Accepted int `json:"accepted"`
	// Counted is, from the store, how many of the Accepted voters are counted as they were
	// told (or for a later vote whose answer was lost); from /api/results only, how much the
	// total grew over the baseline.
	Counted int `json:"counted"`
	// Lost is accepted but not counted, or counted for another option than the voter's
	// newest accepted one. Extra is counted beyond what was accepted: a refused vote
	// counted, or a total that grew by more than the run's voters.
	Lost  int  `json:"lost"`
	Extra int  `json:"extra"`
	OK    bool `json:"ok"` // Lost and Extra are 0: what the contract allows

	Votes struct {
		Accepted int `json:"accepted"`
		Refused  int `json:"refused"`
		Failed   int `json:"failed"`
	} `json:"votes"`
	// Unknown counts the votes that may be counted or not: the voters whose latest vote's
	// answer was lost, and the votes whose answer was lost before the voter had an id.
	// UnknownCounted is how many of those voters the store holds such a vote for.
	Unknown        int `json:"unknown"`
	UnknownCounted int `json:"unknown_counted"`

	// Store names the store read vote by vote ("postgres", "sqlite"); "" when the audit
	// had /api/results only.
	Store   string        `json:"store,omitempty"`
	Results *ResultsCheck `json:"results,omitempty"`
	// Problems are the first few lost and extra votes, each with what its voter was told
	// and what is stored.
	Problems []Problem `json:"problems,omitempty"`
	// Notes say what this audit could not tell.
	Notes []string `json:"notes,omitempty"`

	// Settled is set when nothing changed during the last quiet period before the verdict;
	// Waited is how long the audit waited for the counts to settle.
	Settled bool          `json:"settled"`
	Waited  time.Duration `json:"waited_ns"`

	truncated bool // some problems were left out of Problems
}

// ResultsCheck is the comparison of /api/results with the baseline.
type ResultsCheck struct {
	BaselineTotal int64 `json:"baseline_total"`
	Total         int64 `json:"total"`
	// Growth is each option's count now minus before.
	Growth map[string]int64 `json:"growth"`
	// Expected is what Growth should be: the run's stored votes per option (from the
	// store), or its accepted voters' newest votes (from /api/results only).
	Expected map[string]int64 `json:"expected"`
	// Judged is false when the totals were read but say nothing about the run: no
	// baseline, or others may have voted.
	Judged bool `json:"judged"`
}

// Problem is one lost or extra vote.
type Problem struct {
	Kind   string `json:"kind"`            // "lost" or "extra"
	Voter  string `json:"voter,omitempty"` // "" for a problem of the totals
	Told   string `json:"told"`            // what the voter was told: "accepted a", "refused c", ...
	Stored string `json:"stored"`          // what is stored or shown
}

// maxProblems is how many voters of each kind (lost, extra) an outcome names: enough to
// start looking, few enough to read.
const maxProblems = 5

// problem keeps p unless maxProblems voters of its kind are kept already; a problem of the
// totals (at most one of each kind) is always kept.
func (o *Outcome) problem(p Problem) {
	n := 0
	for _, q := range o.Problems {
		if q.Kind == p.Kind && q.Voter != "" {
			n++
		}
	}
	if n < maxProblems || p.Voter == "" {
		o.Problems = append(o.Problems, p)
	} else {
		o.truncated = true
	}
}

// Options say what the audit may assume.
type Options struct {
	// Store names the store that stored was read from ("postgres", "sqlite").
	Store string
	// OthersVote says that other clients may vote during the run, so the totals' growth
	// proves nothing about it: only the store can judge.
	OthersVote bool
}

// Compare judges the deployment from what it shows: results is /api/results now (nil when
// not read), stored the stored votes of told.Voters() (nil without a store).
func Compare(told *Told, results *voting.Result, stored map[string]voting.Vote, opt Options) *Outcome {
	o := &Outcome{Cast: told.Cast, Accepted: len(told.Final), Store: opt.Store}
	o.Votes.Accepted, o.Votes.Refused, o.Votes.Failed = told.AcceptedVotes, told.RefusedVotes, told.FailedVotes
	o.Unknown = told.UnknownNoID
	for _, os := range told.Unknown {
		if len(os) > 0 {
			o.Unknown++
		}
	}
	if stored != nil {
		o.compareStore(told, stored)
	}
	if results != nil {
		o.compareResults(told, results, stored, opt)
	}
	if told.NoRunLine {
		o.Notes = append(o.Notes, "the voters file lists accepted voters only: cast and the votes are counted from them, refused and unknown votes are not known")
	}
	// Lost first, each kind's voters in id order, then the totals.
	slices.SortStableFunc(o.Problems, func(a, b Problem) int {
		return cmp.Or(-cmp.Compare(a.Kind, b.Kind), cmp.Compare(totals(a), totals(b)))
	})
	o.OK = o.Lost == 0 && o.Extra == 0
	return o
}

// totals is 1 for a problem of the totals, 0 for one of a voter.
func totals(p Problem) int {
	if p.Voter == "" {
		return 1
	}
	return 0
}

// compareStore checks each voter of the run against its stored vote.
func (o *Outcome) compareStore(told *Told, stored map[string]voting.Vote) {
	for _, v := range told.Voters() {
		got, ok := stored[v]
		final, accepted := told.Final[v]
		unknown := told.Unknown[v]
		switch {
		case accepted && !ok:
			o.Lost++
			o.problem(Problem{"lost", v, toldOf(told, v), "nothing"})
		case accepted && got.Option == final:
			o.Counted++
		case ok && slices.Contains(unknown, got.Option):
			// A later vote whose answer was lost made it after all: allowed.
			o.UnknownCounted++
			if accepted {
				o.Counted++
			}
		case accepted:
			o.Lost++
			o.problem(Problem{"lost", v, toldOf(told, v), got.Option})
		case ok:
			// Only refused votes, or votes whose answer was lost for other options: this
			// vote should not be there.
			o.Extra++
			o.problem(Problem{"extra", v, toldOf(told, v), got.Option})
		}
	}
}

// toldOf says what a voter was told: its newest accepted vote, then its later votes that
// were refused or whose answer was lost.
func toldOf(told *Told, v string) string {
	var parts []string
	later := ""
	if o, ok := told.Final[v]; ok {
		parts, later = append(parts, "accepted "+o), "later "
	}
	if os := told.Refused[v]; len(os) > 0 {
		parts = append(parts, later+"refused "+strings.Join(os, ","))
	}
	if os := told.Unknown[v]; len(os) > 0 {
		parts = append(parts, later+"no answer for "+strings.Join(os, ","))
	}
	return strings.Join(parts, ", ")
}

// compareResults compares the growth of each option's count since the baseline with what
// the run should have added. With the store, that is the run's stored votes per option:
// more is rows nobody in the run was told about (extra, unless others voted), less is rows
// the totals do not show (lost). Without it, it is the accepted voters' newest votes,
// within what the votes whose answer was lost may add or move.
func (o *Outcome) compareResults(told *Told, now *voting.Result, stored map[string]voting.Vote, opt Options) {
	rc := &ResultsCheck{Total: now.Total}
	o.Results = rc
	switch {
	case told.Baseline == nil:
		o.Notes = append(o.Notes, "/api/results not compared: the voters file has no baseline (cast with --result-url to record one)")
		return
	case opt.OthersVote:
		o.Notes = append(o.Notes, "/api/results not judged: others may vote (--others-vote)")
	}
	rc.BaselineTotal, rc.Growth, rc.Expected = told.Baseline.Total, map[string]int64{}, map[string]int64{}
	before := counts(told.Baseline)
	after := counts(now)
	for id := range after {
		rc.Growth[id] = after[id] - before[id]
	}
	for id, n := range before {
		if _, ok := after[id]; !ok {
			rc.Growth[id] = -n // an option no longer shown
		}
	}
	if stored == nil {
		// From /api/results only, the total's growth is all there is to go by.
		o.Counted = int(max(now.Total-told.Baseline.Total, 0))
		for _, opt := range told.Final {
			rc.Expected[opt]++
		}
	} else {
		for _, v := range stored {
			rc.Expected[v.Option]++
		}
	}
	if opt.OthersVote {
		return
	}
	rc.Judged = true
	if stored != nil {
		o.judgeWithStore(told, rc)
		return
	}
	o.judgeTotals(told, rc)
}

// judgeWithStore compares the totals' growth with the run's stored votes: more is votes
// nobody in the run was told about (extra), less is stored votes the totals do not show
// (lost).
func (o *Outcome) judgeWithStore(told *Told, rc *ResultsCheck) {
	var surplus, deficit int64
	for id := range union(rc.Growth, rc.Expected) {
		switch d := rc.Growth[id] - rc.Expected[id]; {
		case d > 0:
			surplus += d
		case d < 0:
			deficit -= d
		}
	}
	// Votes of voters the run never learnt the id of may be counted (their answer was
	// lost); any other surplus is votes the run did not cast.
	extra := max(surplus-int64(told.UnknownNoID), 0)
	o.Extra += int(extra)
	o.Lost += int(deficit)
	o.Counted = max(o.Counted-int(deficit), 0)
	told0, grew := "the run's stored votes "+fmtCounts(rc.Expected), "/api/results grew by "+fmtCounts(rc.Growth)
	if extra > 0 {
		o.problem(Problem{"extra", "", told0, fmt.Sprintf("%s: %d more (votes of voters the run never cast for, or others voting)", grew, extra)})
	}
	if deficit > 0 {
		o.problem(Problem{"lost", "", told0, fmt.Sprintf("%s: %d fewer (stored votes the totals do not count)", grew, deficit)})
	}
}

// judgeTotals compares the totals' growth with the accepted voters' newest votes, option by
// option, within what the votes whose answer was lost may explain: an accepted voter's later
// such vote may have moved its vote from its option to one of those, a voter's only such
// votes may have added one to one of theirs, and one without an id to any option. So both
// numbers are lower bounds.
func (o *Outcome) judgeTotals(told *Told, rc *ResultsCheck) {
	mayLose := map[string]int64{} // per option, votes that may have moved away
	mayGain := map[string]int64{} // per option, votes that may have moved or been added there
	for v, os := range told.Unknown {
		final, accepted := told.Final[v]
		moves := false
		for _, u := range os {
			if u != final {
				mayGain[u]++
				moves = true
			}
		}
		if accepted && moves {
			mayLose[final]++
		}
	}
	var lost, surplus int64
	for id := range union(rc.Growth, rc.Expected) {
		d := rc.Growth[id] - rc.Expected[id]
		lost += max(-d-mayLose[id], 0)
		surplus += max(d-mayGain[id], 0)
	}
	extra := max(surplus-int64(told.UnknownNoID), 0)
	o.Lost += int(lost)
	o.Extra += int(extra)
	p := Problem{"lost", "", "accepted " + fmtCounts(rc.Expected), "/api/results grew by " + fmtCounts(rc.Growth)}
	if lost > 0 {
		o.problem(p)
	}
	if extra > 0 {
		p.Kind = "extra"
		o.problem(p)
	}
	o.Notes = append(o.Notes, fmt.Sprintf("from /api/results only: each option's growth since the baseline, assuming nobody else voted meanwhile; "+
		"it cannot name a lost or extra voter, shows a vote counted for the wrong option as 1 lost and 1 extra, "+
		"and lets the %d votes whose answer was lost count or not, so both are lower bounds; "+
		"give --postgres-url or --data-dir to check vote by vote", o.Unknown))
}

// counts returns a result's count per option id.
func counts(r *voting.Result) map[string]int64 {
	m := map[string]int64{}
	for _, o := range r.Options {
		m[o.ID] = o.Count
	}
	return m
}

// union returns a map with the keys of both (its values are not used).
func union(a, b map[string]int64) map[string]int64 {
	m := maps.Clone(a)
	for k, v := range b {
		m[k] += v
	}
	return m
}

// fmtCounts prints counts as "a=3 b=1", sorted by option.
func fmtCounts(m map[string]int64) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

// Line is the verdict in one line, the first the audit prints.
func (o *Outcome) Line() string {
	return fmt.Sprintf("cast %d, accepted %d, counted %d, lost %d, extra %d", o.Cast, o.Accepted, o.Counted, o.Lost, o.Extra)
}

// WriteText prints the verdict line, then how it was reached, the first problems and what
// the audit could not tell, for people.
func (o *Outcome) WriteText(w io.Writer) {
	fmt.Fprintln(w, o.Line())
	fmt.Fprintf(w, "votes    %d accepted (the newest of each of %d voters must count), %d refused (must not count), %d failed (5xx or no answer; %d may count or not)\n",
		o.Votes.Accepted, o.Accepted, o.Votes.Refused, o.Votes.Failed, o.Unknown)
	if o.Store != "" {
		fmt.Fprintf(w, "store    %s, vote by vote: %d of %d accepted voters counted; %d stored votes are ones whose answer was lost (allowed)\n",
			o.Store, o.Counted, o.Accepted, o.UnknownCounted)
	}
	if rc := o.Results; rc != nil {
		if rc.Growth == nil {
			fmt.Fprintf(w, "results  total %d (no baseline)\n", rc.Total)
		} else {
			what := "the run's stored votes"
			if o.Store == "" {
				what = "the accepted voters' newest votes"
			}
			fmt.Fprintf(w, "results  total %d, %+d since the baseline (%s); %s: %s\n",
				rc.Total, rc.Total-rc.BaselineTotal, fmtCounts(rc.Growth), what, fmtCounts(rc.Expected))
		}
	}
	for _, p := range o.Problems {
		if p.Voter == "" {
			fmt.Fprintf(w, "%-8s totals: %s; %s\n", p.Kind, p.Told, p.Stored)
		} else {
			fmt.Fprintf(w, "%-8s voter %s: %s; stored %s\n", p.Kind, p.Voter, p.Told, p.Stored)
		}
	}
	if o.truncated {
		fmt.Fprintf(w, "%-8s (the first %d voters of each kind are named)\n", "", maxProblems)
	}
	for _, n := range o.Notes {
		fmt.Fprintf(w, "note     %s\n", n)
	}
}
