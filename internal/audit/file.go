package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/votingapp/voting/internal/voting"
)

// The voters file (`voting loadgen --voters-out`) is text, one voter a line, so that shell
// tools and psql output compare with it:
//
//	# voting voters v1: "<voter id> <option>" is a voter's newest accepted vote; the other lines are for voting audit
//	# run {"cast":3000,"accepted_votes":3000,...,"baseline":{"options":[...],"total":0}}
//	<voter id> <option>
//	<voter id> unknown <option>[,<option>...]
//	<voter id> refused <option>[,<option>...]
//
// A line of two fields is always an accepted voter, as in the file's first version, which
// the cluster check reads (deploy/kubetest/cluster, voterLines); every other line has one or
// more than two fields, so readers of that version skip them. Option ids have no commas
// and no spaces (voting.ValidOptionID), so the lists need no quoting.
const (
	fileHeader = `# voting voters v1: "<voter id> <option>" is a voter's newest accepted vote; the other lines are for voting audit`
	runPrefix  = "# run "
)

// runLine is the "# run" line: the run's counts and the baseline.
type runLine struct {
	Cast          int            `json:"cast"`
	AcceptedVotes int            `json:"accepted_votes"`
	RefusedVotes  int            `json:"refused_votes"`
	FailedVotes   int            `json:"failed_votes"`
	UnknownNoID   int            `json:"unknown_no_id"`
	Baseline      *voting.Result `json:"baseline,omitempty"`
}

// WriteFile writes what the run told its voters to path.
func WriteFile(path string, t *Told) error {
	var b bytes.Buffer
	b.WriteString(fileHeader + "\n")
	run, err := json.Marshal(runLine{t.Cast, t.AcceptedVotes, t.RefusedVotes, t.FailedVotes, t.UnknownNoID, t.Baseline})
	if err != nil {
		return err
	}
	b.WriteString(runPrefix)
	b.Write(run)
	b.WriteByte('\n')
	var lines []string
	for v, o := range t.Final {
		lines = append(lines, v+" "+o)
	}
	for kind, m := range map[string]map[string][]string{"unknown": t.Unknown, "refused": t.Refused} {
		for v, os := range m {
			if len(os) > 0 {
				lines = append(lines, v+" "+kind+" "+strings.Join(os, ","))
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ReadFile reads a voters file. A file of "<voter id> <option>" lines only (no run line) is
// taken as the list of accepted voters, each cast once.
func ReadFile(path string) (*Told, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &Told{Final: map[string]string{}, Unknown: map[string][]string{}, Refused: map[string][]string{}}
	sawRun := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20) // the run line holds the baseline: up to 12 options with labels
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, runPrefix); ok {
			var r runLine
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return nil, fmt.Errorf("%s:%d: run line: %w", path, n, err)
			}
			t.Cast, t.AcceptedVotes, t.RefusedVotes, t.FailedVotes, t.UnknownNoID, t.Baseline =
				r.Cast, r.AcceptedVotes, r.RefusedVotes, r.FailedVotes, r.UnknownNoID, r.Baseline
			sawRun = true
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if err := t.parseVoter(strings.Fields(line)); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !sawRun {
		t.Cast, t.AcceptedVotes, t.NoRunLine = len(t.Final), len(t.Final), true
	}
	return t, nil
}

// parseVoter reads one voter line's fields into t.
func (t *Told) parseVoter(f []string) error {
	if len(f) == 0 || !voting.ValidVoterID(f[0]) {
		return errors.New(`want "<voter id> <option>", "<voter id> unknown <options>" or "<voter id> refused <options>"`)
	}
	v := f[0]
	switch {
	case len(f) == 2 && voting.ValidOptionID(f[1]):
		if o, ok := t.Final[v]; ok && o != f[1] {
			return fmt.Errorf("voter %s accepted twice, for %s and %s", v, o, f[1])
		}
		t.Final[v] = f[1]
		return nil
	case len(f) == 3 && (f[1] == "unknown" || f[1] == "refused"):
		os := strings.Split(f[2], ",")
		for _, o := range os {
			if !voting.ValidOptionID(o) {
				return fmt.Errorf("voter %s: %q is not an option id", v, o)
			}
		}
		m := map[string]map[string][]string{"unknown": t.Unknown, "refused": t.Refused}[f[1]]
		m[v] = uniq(append(m[v], os...))
		return nil
	}
	return fmt.Errorf(`%q: want "<voter id> <option>", "<voter id> unknown <options>" or "<voter id> refused <options>"`, strings.Join(f, " "))
}
