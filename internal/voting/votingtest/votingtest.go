// Package votingtest holds the contract tests that every Queue and Store implementation
// must pass, so that the embedded default (memqueue, sqlitestore) and the servers (Redis,
// PostgreSQL) behave the same. Each adapter's tests call these with a constructor.
package votingtest

import (
	"context"
	"os"
	"testing"

	"github.com/votingapp/voting/internal/voting"
)

// Queue is what the queue contract needs from an implementation under test. Each call of
// the constructor that returns it must give a fresh, isolated queue (its own stream name or
// instance), cleaned up with t.Cleanup.
type Queue struct {
	Publisher voting.Publisher
	// NewConsumer returns a consumer of the shared group, with the given name. Deliveries a
	// consumer holds unacknowledged go to another consumer after ClaimTimeout.
	NewConsumer func(t *testing.T, name string) voting.Consumer
	// DeadLetters lists the dead letters so far, oldest first.
	DeadLetters func(t *testing.T) []voting.DeadLetter
	// Stats reads the queue's backlog (what the metrics export).
	Stats func(ctx context.Context) (voting.QueueStats, error)
	// PublishRaw puts raw bytes on the queue as a message, or is nil when the
	// implementation cannot hold anything but valid votes (the in-process queue).
	PublishRaw func(t *testing.T, body []byte)
}

// Store is what the store contract needs: a recorder and tallier on a fresh, isolated store
// (its own schema or file), and a way to read one voter's stored vote.
type Store interface {
	voting.Recorder
	voting.Tallier
	voting.Watcher
	// VoteOf returns the stored vote of a voter, and false when there is none.
	VoteOf(ctx context.Context, voterID string) (voting.Vote, bool, error)
	// VotesOf returns the stored votes of many voters at once (what an audit reads), by
	// voter id; a voter without a vote has no entry.
	VotesOf(ctx context.Context, voterIDs []string) (map[string]voting.Vote, error)
	voting.StatusKeeper
}

// RequireServer returns the value of the environment variable that points at a test
// server. Without it the test skips with the reason, except under CI=true, where it fails:
// CI must never pass by skipping the integration tests.
func RequireServer(t testing.TB, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not set: the integration servers are missing (run the tests with `make test`)", env)
	}
	t.Skipf("%s is not set: run `make test` to start throwaway Redis and PostgreSQL servers", env)
	return ""
}
