package voting_test

import (
	"strings"
	"testing"

	"github.com/votingapp/voting/internal/voting"
)

// FuzzDecodeMessage feeds the queue's decoder whatever may be in a stream entry. It never
// panics; what it accepts is a valid vote that encodes back to itself; what it refuses gets a
// reason for the dead letter.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"voter_id":"0123456789abcdef0123456789abcdef","vote":"a","at":"2026-11-26T01:02:03.456789Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := voting.DecodeMessage(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("refused without a reason")
			}
			return
		}
		if verr := v.Validate(); verr != nil {
			t.Fatalf("decoded %+v, which does not validate: %v", v, verr)
		}
		again, err := voting.DecodeMessage(voting.EncodeMessage(v))
		if err != nil || again.VoterID != v.VoterID || again.Option != v.Option || !again.At.Equal(v.At) || again.TraceParent != v.TraceParent {
			t.Fatalf("round trip of %+v: got %+v, %v", v, again, err)
		}
	})
}

// FuzzParseOptions feeds --options whatever a person may type. It never panics; what it
// accepts is 2 to MaxOptions valid, distinct ids with short non-empty labels, and prints back
// to the same options.
func FuzzParseOptions(f *testing.F) {
	f.Add("a=Cats,b=Dogs")
	f.Fuzz(func(t *testing.T, s string) {
		opts, err := voting.ParseOptions(s)
		if err != nil {
			return
		}
		if len(opts) < 2 || len(opts) > voting.MaxOptions {
			t.Fatalf("%q: %d options accepted", s, len(opts))
		}
		seen := map[string]bool{}
		for _, o := range opts {
			if !voting.ValidOptionID(o.ID) || seen[o.ID] || o.Label == "" || len(o.Label) > 64 || strings.TrimSpace(o.Label) != o.Label {
				t.Fatalf("%q: bad option %+v accepted", s, o)
			}
			seen[o.ID] = true
		}
		again, err := voting.ParseOptions(opts.String())
		if err != nil || again.String() != opts.String() {
			t.Fatalf("%q: round trip gave %q, %v", s, again.String(), err)
		}
		r := opts.Result(map[string]int64{opts[0].ID: 1})
		if r.Total != 1 || len(r.Options) != len(opts) {
			t.Fatalf("%q: result %+v", s, r)
		}
	})
}
