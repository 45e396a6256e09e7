package memqueue_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

func newTestQueue(t *testing.T, cfg memqueue.Config) *memqueue.Queue {
	t.Helper()
	q := memqueue.New(cfg)
	t.Cleanup(func() { q.Close() })
	return q
}

func TestQueueContract(t *testing.T) {
	votingtest.TestQueue(t, func(t *testing.T) votingtest.Queue {
		q := newTestQueue(t, memqueue.Config{
			ClaimTimeout:  votingtest.ClaimTimeout,
			MaxDeliveries: votingtest.MaxDeliveries,
		})
		return votingtest.Queue{
			Publisher: q,
			Stats:     q.Stats,
			NewConsumer: func(t *testing.T, name string) voting.Consumer {
				c := q.Consumer(name)
				t.Cleanup(func() { c.Close() })
				return c
			},
			DeadLetters: func(t *testing.T) []voting.DeadLetter { return q.DeadLetters(0) },
		}
	})
}

func vote(i int) voting.Vote {
	return voting.Vote{VoterID: fmt.Sprintf("v%d", i), Option: "a", At: voting.Now()}
}

// A full queue makes Publish wait for room rather than drop or fail, and a done context
// ends the wait with its error.
func TestPublishBlocksWhenFull(t *testing.T) {
	q := newTestQueue(t, memqueue.Config{Capacity: 2})
	for i := range 2 {
		if err := q.Publish(t.Context(), vote(i)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := q.Publish(ctx, vote(2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish to a full queue: got %v, want context.DeadlineExceeded", err)
	}

	// Delivered but unacknowledged votes still count: room comes with the Ack.
	c := q.Consumer("c1")
	defer c.Close()
	ds, err := c.Receive(t.Context(), 1)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive: %d deliveries, %v", len(ds), err)
	}
	published := make(chan error, 1)
	go func() { published <- q.Publish(t.Context(), vote(3)) }()
	select {
	case err := <-published:
		t.Fatalf("Publish returned %v before there was room", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := c.Ack(t.Context(), ds...); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	select {
	case err := <-published:
		if err != nil {
			t.Fatalf("Publish after Ack: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish still blocked after an Ack made room")
	}
}

// Close refuses new votes (with an error the vote service maps to 503) and wakes blocked
// publishers, while consumers receive everything that was accepted; Drain returns once
// it is all acknowledged.
func TestCloseDrains(t *testing.T) {
	q := newTestQueue(t, memqueue.Config{Capacity: 3})
	for i := range 3 {
		if err := q.Publish(t.Context(), vote(i)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- q.Publish(t.Context(), vote(9)) }()
	time.Sleep(50 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-blocked; !errors.Is(err, memqueue.ErrClosed) || !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("blocked Publish after Close: got %v, want ErrClosed wrapping voting.ErrUnavailable", err)
	}
	if err := q.Publish(t.Context(), vote(10)); !errors.Is(err, memqueue.ErrClosed) {
		t.Errorf("Publish after Close: got %v, want ErrClosed", err)
	}
	if err := q.Ping(t.Context()); !errors.Is(err, memqueue.ErrClosed) {
		t.Errorf("Ping after Close: got %v, want ErrClosed", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := q.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with votes left and no consumer: got %v, want context.DeadlineExceeded", err)
	}

	drained := make(chan error, 1)
	go func() { drained <- q.Drain(t.Context()) }()
	c := q.Consumer("c1")
	defer c.Close()
	var got []voting.Delivery
	for len(got) < 3 {
		ds, err := c.Receive(t.Context(), 2)
		if err != nil {
			t.Fatalf("Receive after Close: %v", err)
		}
		got = append(got, ds...)
		if err := c.Ack(t.Context(), ds...); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	for i, d := range got {
		if d.Vote.VoterID != vote(i).VoterID {
			t.Errorf("delivery %d: got voter %s, want %s", i, d.Vote.VoterID, vote(i).VoterID)
		}
	}
	if ds, err := c.Receive(t.Context(), 1); !errors.Is(err, voting.ErrClosed) {
		t.Errorf("Receive on a closed, drained queue: got %d deliveries and %v, want voting.ErrClosed", len(ds), err)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after every vote was acknowledged")
	}
}

func BenchmarkPublish(b *testing.B) {
	q := memqueue.New(memqueue.Config{Capacity: math.MaxInt})
	v := vote(1)
	for b.Loop() {
		if err := q.Publish(b.Context(), v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceiveAck: see votingtest.BenchmarkReceiveAck.
func BenchmarkReceiveAck(b *testing.B) {
	q := memqueue.New(memqueue.Config{Capacity: b.N + 1})
	for i := range b.N {
		if err := q.Publish(b.Context(), vote(i)); err != nil {
			b.Fatal(err)
		}
	}
	votingtest.BenchmarkReceiveAck(b, q.Consumer("c1"))
}
