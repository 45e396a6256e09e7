package sqlitestore

import (
	"testing"

	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

// BenchmarkRecord: see votingtest.BenchmarkRecord.
func BenchmarkRecord(b *testing.B) {
	votingtest.BenchmarkRecord(b, func(b *testing.B) voting.Recorder {
		s, _ := newTestStore(b)
		return s
	})
}
