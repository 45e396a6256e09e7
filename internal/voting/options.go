package voting

import (
	"fmt"
	"math"
	"strings"
)

// Option is one choice of the poll.
type Option struct {
	ID    string `json:"id"`
	Label string `json:"label"`
}

// Options is the poll's ordered list of choices, 2 to MaxOptions of them.
type Options []Option

// MaxOptions bounds the poll so that the pages stay usable and a typo cannot make thousands.
const MaxOptions = 12

// DefaultOptions is the poll of the original app.
const DefaultOptions = "a=Cats,b=Dogs"

// ParseOptions parses "id=Label,id=Label,...". Ids must be unique and valid (ValidOptionID);
// labels are trimmed, must not be empty and are at most 64 characters.
func ParseOptions(s string) (Options, error) {
	var opts Options
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, label, ok := strings.Cut(part, "=")
		id, label = strings.TrimSpace(id), strings.TrimSpace(label)
		if !ok || label == "" {
			return nil, fmt.Errorf("option %q: want id=Label", part)
		}
		if !ValidOptionID(id) {
			return nil, fmt.Errorf("option %q: id must be 1-32 letters, digits, '-' or '_'", id)
		}
		if len(label) > 64 {
			return nil, fmt.Errorf("option %q: label longer than 64 characters", id)
		}
		if seen[id] {
			return nil, fmt.Errorf("option %q given twice", id)
		}
		seen[id] = true
		opts = append(opts, Option{ID: id, Label: label})
	}
	if len(opts) < 2 || len(opts) > MaxOptions {
		return nil, fmt.Errorf("options %q: want 2 to %d options, got %d", s, MaxOptions, len(opts))
	}
	return opts, nil
}

// String formats the options the way ParseOptions reads them.
func (o Options) String() string {
	parts := make([]string, len(o))
	for i, opt := range o {
		parts[i] = opt.ID + "=" + opt.Label
	}
	return strings.Join(parts, ",")
}

// Labels returns the options' labels in order.
func (o Options) Labels() []string {
	l := make([]string, len(o))
	for i, opt := range o {
		l[i] = opt.Label
	}
	return l
}

// Label returns the label of option id, or "" when there is none.
func (o Options) Label(id string) string {
	for _, opt := range o {
		if opt.ID == id {
			return opt.Label
		}
	}
	return ""
}

// Has reports whether id is one of the options.
func (o Options) Has(id string) bool {
	for _, opt := range o {
		if opt.ID == id {
			return true
		}
	}
	return false
}

// Result is a tally as users see it: each option with its count and share, and the total.
type Result struct {
	Options []OptionResult `json:"options"`
	Total   int64          `json:"total"`
}

// OptionResult is one option's line in a Result. Percent is 0 when there are no votes.
type OptionResult struct {
	ID      string  `json:"id"`
	Label   string  `json:"label"`
	Count   int64   `json:"count"`
	Percent float64 `json:"percent"`
}

// Result builds the user-facing result from raw counts. Votes for ids that are no longer
// configured are not shown and not counted in the total.
func (o Options) Result(counts map[string]int64) Result {
	r := Result{Options: make([]OptionResult, len(o))}
	for i, opt := range o {
		r.Options[i] = OptionResult{ID: opt.ID, Label: opt.Label, Count: counts[opt.ID]}
		r.Total += counts[opt.ID]
	}
	if r.Total > 0 {
		for i := range r.Options {
			// Two decimals are all a page shows, and keep the JSON readable.
			r.Options[i].Percent = math.Round(float64(r.Options[i].Count)*10000/float64(r.Total)) / 100
		}
	}
	return r
}
