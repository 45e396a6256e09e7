package redisqueue_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/votingapp/voting/internal/redisqueue"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

// BenchmarkPublish is one vote service request's queue cost: one XADD round trip.
func BenchmarkPublish(b *testing.B) {
	q, _, _ := newTestQueue(b, redisqueue.Config{})
	v := vote(1)
	for b.Loop() {
		if err := q.Publish(b.Context(), v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel is many concurrent voters on one process (GOMAXPROCS
// goroutines times -cpu).
func BenchmarkPublishParallel(b *testing.B) {
	q, _, _ := newTestQueue(b, redisqueue.Config{})
	v := vote(1)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Publish(context.Background(), v); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReceiveAck is the worker's queue cost per vote with its default batch of 500:
// one XREADGROUP and one pipelined XACK+XDEL per batch. The votes are put on the stream
// beforehand, pipelined, outside the timer.
func BenchmarkReceiveAck(b *testing.B) {
	q, admin, cfg := newTestQueue(b, redisqueue.Config{})
	body := string(voting.EncodeMessage(vote(1)))
	for i := 0; i < b.N; i += 1000 {
		_, err := admin.Pipelined(b.Context(), func(p redis.Pipeliner) error {
			for j := i; j < min(i+1000, b.N); j++ {
				p.XAdd(b.Context(), &redis.XAddArgs{Stream: cfg.Stream, Values: []any{redisqueue.Field, body}})
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	c := q.Consumer("bench")
	defer c.Close()
	votingtest.BenchmarkReceiveAck(b, c)
	if s, err := q.Stats(b.Context()); err != nil || s.Length != 0 || s.Pending != 0 {
		b.Fatalf("after the run: %+v, %v; want an empty stream", s, err)
	}
}
