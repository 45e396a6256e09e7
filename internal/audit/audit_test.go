package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/voting"
)

// result returns /api/results with the counts given as "a=3 b=1".
func result(counts string) *voting.Result {
	r := &voting.Result{}
	for _, f := range strings.Fields(counts) {
		id, n, _ := strings.Cut(f, "=")
		var c int64
		fmt.Sscan(n, &c)
		r.Options = append(r.Options, voting.OptionResult{ID: id, Label: id, Count: c})
		r.Total += c
	}
	return r
}

// rows returns stored votes from "voter=option ...".
func rows(s string) map[string]voting.Vote {
	m := map[string]voting.Vote{}
	for _, f := range strings.Fields(s) {
		v, o, _ := strings.Cut(f, "=")
		m[v] = voting.Vote{VoterID: v, Option: o}
	}
	return m
}

// told is a run of four voters on top of a baseline of a=10 b=5: v1 and v2 accepted for a,
// v3 accepted for b then a vote for a whose answer was lost, v4 refused (c), v5 only a vote
// for b whose answer was lost.
func told() *Told {
	return &Told{
		Cast: 7, AcceptedVotes: 4, RefusedVotes: 1, FailedVotes: 2,
		Final:    map[string]string{"v1": "a", "v2": "a", "v3": "b"},
		Unknown:  map[string][]string{"v3": {"a"}, "v5": {"b"}},
		Refused:  map[string][]string{"v4": {"c"}},
		Baseline: result("a=10 b=5"),
	}
}

func TestCompareStore(t *testing.T) {
	tests := []struct {
		name                                 string
		stored, results                      string
		counted, lost, extra, unknownCounted int
		problems                             []string
	}{
		{"as told", "v1=a v2=a v3=b", "a=12 b=6", 3, 0, 0, 0, nil},
		{"lost answers counted", "v1=a v2=a v3=a v5=b", "a=13 b=6", 3, 0, 0, 2, nil},
		{"a row deleted", "v1=a v3=b", "a=11 b=6", 2, 1, 0, 0, []string{"lost v2: accepted a; stored nothing"}},
		{"counted for another option", "v1=a v2=b v3=b", "a=11 b=7", 2, 1, 0, 0, []string{"lost v2: accepted a; stored b"}},
		{"a refused vote counted", "v1=a v2=a v3=b v4=c", "a=12 b=6 c=1", 3, 0, 1, 0, []string{"extra v4: refused c; stored c"}},
		{"a lost answer counted for another option", "v1=a v2=a v3=b v5=a", "a=13 b=6", 3, 0, 1, 0, []string{"extra v5: no answer for b; stored a"}},
		{"rows of voters never cast", "v1=a v2=a v3=b", "a=14 b=6", 3, 0, 2, 0, []string{"extra totals: the run's stored votes a=2 b=1; /api/results grew by a=4 b=1: 2 more (votes of voters the run never cast for, or others voting)"}},
		{"totals short of the rows", "v1=a v2=a v3=b", "a=11 b=6", 2, 1, 0, 0, []string{"lost totals: the run's stored votes a=2 b=1; /api/results grew by a=1 b=1: 1 fewer (stored votes the totals do not count)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Compare(told(), result(tt.results), rows(tt.stored), Options{Store: "test"})
			if o.Cast != 7 || o.Accepted != 3 || o.Counted != tt.counted || o.Lost != tt.lost || o.Extra != tt.extra || o.UnknownCounted != tt.unknownCounted {
				t.Errorf("%s (unknown counted %d); want counted %d, lost %d, extra %d, unknown counted %d", o.Line(), o.UnknownCounted, tt.counted, tt.lost, tt.extra, tt.unknownCounted)
			}
			if o.OK != (tt.lost == 0 && tt.extra == 0) {
				t.Errorf("OK = %v", o.OK)
			}
			var got []string
			for _, p := range o.Problems {
				if p.Voter == "" {
					got = append(got, fmt.Sprintf("%s totals: %s; %s", p.Kind, p.Told, p.Stored))
				} else {
					got = append(got, fmt.Sprintf("%s %s: %s; stored %s", p.Kind, p.Voter, p.Told, p.Stored))
				}
			}
			if !slices.Equal(got, tt.problems) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.problems, "\n"))
			}
		})
	}
}

// TestCompareResultsOnly: from the totals alone, a loss or an extra beyond what the lost
// answers could explain is seen, a swap between options is one of each, and the limits are
// said.
func TestCompareResultsOnly(t *testing.T) {
	tests := []struct {
		name                 string
		results              string
		counted, lost, extra int
		othersVote           bool
	}{
		{"as told", "a=12 b=6", 3, 0, 0, false},
		{"lost answers counted", "a=13 b=6", 4, 0, 0, false},
		{"v3 moved to a, v5 counted", "a=13 b=6", 4, 0, 0, false},
		{"one lost", "a=11 b=6", 2, 1, 0, false},
		{"two lost", "a=10 b=6", 1, 2, 0, false},
		{"b's voter may have moved to a (a lower bound)", "a=12 b=5", 2, 0, 0, false},
		{"extra beyond the lost answers", "a=14 b=7", 6, 0, 1, false},
		{"a vote of a counted for c", "a=11 b=6 c=1", 3, 1, 1, false},
		{"two of a counted for c", "a=10 b=6 c=2", 3, 2, 2, false},
		{"others vote: not judged", "a=30 b=6", 21, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Compare(told(), result(tt.results), nil, Options{OthersVote: tt.othersVote})
			if o.Counted != tt.counted || o.Lost != tt.lost || o.Extra != tt.extra || o.Unknown != 2 {
				t.Errorf("%s, unknown %d; want counted %d, lost %d, extra %d, unknown 2", o.Line(), o.Unknown, tt.counted, tt.lost, tt.extra)
			}
			if text := fmt.Sprint(o.Notes); tt.othersVote != strings.Contains(text, "not judged") ||
				!tt.othersVote && !strings.Contains(text, "assuming nobody else voted") {
				t.Errorf("notes %q: want the limits of /api/results said", text)
			}
		})
	}
	// Without lost answers, a swap is one lost and one extra.
	clean := told()
	clean.Unknown = nil
	if o := Compare(clean, result("a=11 b=7"), nil, Options{}); o.Lost != 1 || o.Extra != 1 {
		t.Errorf("a vote of a counted for b, from the totals: %s; want lost 1, extra 1", o.Line())
	}
	// Without a baseline there is nothing to compare the totals with.
	clean.Baseline = nil
	if o := Compare(clean, result("a=99"), rows("v1=a v2=a v3=b"), Options{Store: "test"}); !o.OK || o.Counted != 3 || !strings.Contains(fmt.Sprint(o.Notes), "no baseline") {
		t.Errorf("no baseline: %s, notes %q; want the store's verdict and a note", o.Line(), o.Notes)
	}
}

// TestToldFrom: the report's answers become what each voter was told.
func TestToldFrom(t *testing.T) {
	rep := &loadgen.Report{
		Sent: 10, Accepted: 5, Failed: 5,
		ByStatus:  map[string]int{"200": 5, "400": 1, "429": 1, "503": 2, "error": 1},
		Final:     map[string]string{"v1": "a", "v2": "b"},
		Unsure:    map[string][]string{"v1": {"b", "b"}, "v3": {"a"}},
		Refused:   map[string][]string{"v4": {"c", "a", "c"}},
		UnsureNew: 3, // v3, and two votes of voters never told an id
	}
	got := ToldFrom(rep, result("a=1"))
	want := &Told{Cast: 10, AcceptedVotes: 5, RefusedVotes: 2, FailedVotes: 3, UnknownNoID: 2,
		Final: rep.Final, Unknown: map[string][]string{"v1": {"b"}, "v3": {"a"}}, Refused: map[string][]string{"v4": {"a", "c"}},
		Baseline: result("a=1")}
	if !equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if v := got.Voters(); !slices.Equal(v, []string{"v1", "v2", "v3", "v4"}) {
		t.Errorf("Voters() = %v", v)
	}
}

// TestFileRoundTrip: what is written is read back, and a reader of the first version (two
// fields a line, the cluster check's) sees exactly the accepted voters.
func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voters")
	in := told()
	in.UnknownNoID = 4
	in.Baseline.Options[0].Label = "Cats and dogs" // spaces in the run line
	if err := WriteFile(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(in, out) || out.NoRunLine {
		t.Errorf("read back %+v\nwant %+v", out, in)
	}
	b, _ := os.ReadFile(path)
	old := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			old[f[0]] = f[1]
		}
	}
	if !maps.Equal(old, in.Final) {
		t.Errorf("two-field lines %v, want the accepted voters %v:\n%s", old, in.Final, b)
	}

	// A plain list, as psql or the first version wrote it.
	if err := os.WriteFile(path, []byte("v1 a\nv2 b\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err = ReadFile(path); err != nil || out.Cast != 2 || len(out.Final) != 2 || !out.NoRunLine || out.Baseline != nil {
		t.Errorf("plain list: %+v, %v", out, err)
	}
	for _, bad := range []string{"v1\n", "v1 a b\n", "v1 unknown a,\n", "v1 a\nv1 b\n", "v 1 a\n", "bad/id a\n", "# run {\n"} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFile(path); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// equal reports whether two Tolds say the same.
func equal(t, u *Told) bool {
	eq := func(a, b map[string][]string) bool {
		return maps.EqualFunc(a, b, slices.Equal[[]string])
	}
	return t.Cast == u.Cast && t.AcceptedVotes == u.AcceptedVotes && t.RefusedVotes == u.RefusedVotes &&
		t.FailedVotes == u.FailedVotes && t.UnknownNoID == u.UnknownNoID && maps.Equal(t.Final, u.Final) &&
		eq(t.Unknown, u.Unknown) && eq(t.Refused, u.Refused) && fmt.Sprint(t.Baseline) == fmt.Sprint(u.Baseline)
}

// fakeDeployment is a result service and a store whose votes arrive over time, as a worker
// drains the queue.
type fakeDeployment struct {
	mu     sync.Mutex
	stored map[string]voting.Vote
	reads  int
}

func (f *fakeDeployment) VotesOf(_ context.Context, ids []string) (map[string]voting.Vote, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	m := map[string]voting.Vote{}
	for _, id := range ids {
		if v, ok := f.stored[id]; ok {
			m[id] = v
		}
	}
	return m, nil
}

func (f *fakeDeployment) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := map[string]int64{"a": 10, "b": 5}
	for _, v := range f.stored {
		c[v.Option]++
	}
	_ = json.NewEncoder(w).Encode(result(fmt.Sprintf("a=%d b=%d", c["a"], c["b"])))
}

func (f *fakeDeployment) record(v, o string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stored[v] = voting.Vote{VoterID: v, Option: o}
}

// TestRunWaitsForTheQueue: votes still queued are not lost: Run waits until they are all
// counted and nothing moves; a vote that never comes is lost at the deadline.
func TestRunWaitsForTheQueue(t *testing.T) {
	f := &fakeDeployment{stored: map[string]voting.Vote{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := Config{ResultURL: srv.URL, Store: f, StoreName: "fake", Timeout: 5 * time.Second, Interval: 10 * time.Millisecond, Quiet: 100 * time.Millisecond}
	go func() {
		for _, v := range []string{"v1", "v2", "v3"} {
			time.Sleep(50 * time.Millisecond)
			f.record(v, told().Final[v])
		}
	}()
	o, err := Run(context.Background(), told(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !o.OK || !o.Settled || o.Line() != "cast 7, accepted 3, counted 3, lost 0, extra 0" || o.Waited < 250*time.Millisecond {
		t.Fatalf("%s, settled %v after %v; want every vote counted, after the last arrived and 100 ms of quiet", o.Line(), o.Settled, o.Waited)
	}

	f.mu.Lock()
	delete(f.stored, "v2")
	f.mu.Unlock()
	cfg.Timeout = 300 * time.Millisecond
	o, err = Run(context.Background(), told(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.OK || o.Lost != 1 || o.Waited < cfg.Timeout {
		t.Fatalf("%s after %v; want lost 1 after the whole %v", o.Line(), o.Waited, cfg.Timeout)
	}
	var text strings.Builder
	o.WriteText(&text)
	for _, want := range []string{"cast 7, accepted 3, counted 2, lost 1, extra 0\n", "lost     voter v2: accepted a; stored nothing\n", "store    fake, vote by vote"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, &text)
		}
	}

	// A result service that does not answer: an error, not a verdict.
	srv.Close()
	if _, err := Run(context.Background(), told(), Config{ResultURL: srv.URL, Timeout: 50 * time.Millisecond, Interval: 10 * time.Millisecond}); err == nil {
		t.Error("no error with the result service gone")
	}
}

// TestProblemsBounded: an outcome names the first few voters of each kind, and keeps the
// totals' problem whatever their number.
func TestProblemsBounded(t *testing.T) {
	tl := &Told{Cast: 20, AcceptedVotes: 10, Final: map[string]string{}, Refused: map[string][]string{}, Baseline: result("a=0")}
	stored := map[string]voting.Vote{}
	for i := range 10 {
		tl.Final[fmt.Sprint("a", i)] = "a"
		r := fmt.Sprint("r", i)
		tl.Refused[r] = []string{"a"}
		stored[r] = voting.Vote{VoterID: r, Option: "a"}
	}
	o := Compare(tl, result("a=12"), stored, Options{Store: "test"})
	if o.Lost != 10 || o.Extra != 12 || len(o.Problems) != 2*maxProblems+1 || o.Problems[len(o.Problems)-1].Voter != "" {
		t.Fatalf("%s, problems %+v; want lost 10, extra 12, %d voters of each kind and the totals last", o.Line(), o.Problems, maxProblems)
	}
	var text strings.Builder
	o.WriteText(&text)
	if !strings.Contains(text.String(), "(the first 5 voters of each kind are named)") {
		t.Errorf("the text does not say that some were left out:\n%s", &text)
	}
}
