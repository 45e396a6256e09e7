package voting_test

import (
	"testing"

	"github.com/votingapp/voting/internal/voting"
)

// benchVote is a vote as the vote service makes it, with a 128-bit hex voter id.
var benchVote = voting.Vote{
	VoterID: "4f9c2b1e8d7a6c5b4f9c2b1e8d7a6c5b",
	Option:  "a",
	At:      voting.Now(),
}

// BenchmarkEncodeMessage is the vote service's cost to put one vote in a queue message.
func BenchmarkEncodeMessage(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = voting.EncodeMessage(benchVote)
	}
}

// BenchmarkDecodeMessage is the worker's cost to read one vote back, with its validation.
func BenchmarkDecodeMessage(b *testing.B) {
	msg := voting.EncodeMessage(benchVote)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := voting.DecodeMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeMessageTraced is BenchmarkDecodeMessage with a trace context in the message.
func BenchmarkDecodeMessageTraced(b *testing.B) {
	v := benchVote
	v.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	msg := voting.EncodeMessage(v)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := voting.DecodeMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
}
