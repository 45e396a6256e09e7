package votingtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/voting"
)

// Settings that a queue under TestQueue must be constructed with, so that redelivery and
// the delivery limit can be tested in seconds.
const (
	// ClaimTimeout is the claim timeout the constructor must configure.
	ClaimTimeout = 300 * time.Millisecond
	// MaxDeliveries is the delivery limit the constructor must configure.
	MaxDeliveries = 3
)

// How long the tests wait. arrive bounds the wait for something that must happen: reclaims
// are checked about every ClaimTimeout/2, and the machine may be busy with other test
// packages. quiet is how long the tests watch for something that must not happen: long
// enough for several reclaim checks past the claim timeout.
const (
	arrive = 10 * time.Second
	quiet  = 3 * ClaimTimeout
)

// TestQueue runs the queue contract against fresh queues from newQueue. Every
// implementation must pass it; see Queue for what the constructor must provide, and
// ClaimTimeout and MaxDeliveries for how it must be configured.
func TestQueue(t *testing.T, newQueue func(t *testing.T) Queue) {
	tests := []struct {
		name string
		run  func(t *testing.T, q Queue)
	}{
		{"PublishReceive", testPublishReceive},
		{"PublishRejectsInvalidVotes", testPublishRejectsInvalid},
		{"PublishHonoursContext", testPublishContext},
		{"ReceiveRespectsMax", testReceiveMax},
		{"ReceiveBlocksUntilPublish", testReceiveBlocks},
		{"ReceiveReturnsWhenContextDone", testReceiveContext},
		{"ReceiveAfterClose", testReceiveAfterClose},
		{"Batch1000", testBatch},
		{"DeadConsumerRedelivered", testDeadConsumer},
		{"LiveConsumerKeepsDeliveries", testLiveConsumer},
		{"ConsumersShareWithoutDuplicates", testShare},
		{"DeadLetter", testDeadLetter},
		{"MaxDeliveries", testMaxDeliveries},
		{"MalformedMessagesDeadLettered", testMalformed},
		{"Stats", testStats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The tests spend most of their time waiting for timeouts, not working, so
			// they run in parallel; each has its own queue.
			t.Parallel()
			tt.run(t, newQueue(t))
		})
	}
}

// testVote returns a distinct valid vote for i, at microsecond precision.
func testVote(i int) voting.Vote {
	opt := "a"
	if i%2 == 1 {
		opt = "b"
	}
	return voting.Vote{
		VoterID: fmt.Sprintf("voter-%05d", i),
		Option:  opt,
		At:      time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Microsecond),
	}
}

func mustPublish(t *testing.T, q Queue, vs ...voting.Vote) {
	t.Helper()
	for _, v := range vs {
		if err := q.Publisher.Publish(t.Context(), v); err != nil {
			t.Fatalf("Publish(%+v): %v", v, err)
		}
	}
}

func mustAck(t *testing.T, c voting.Consumer, ds ...voting.Delivery) {
	t.Helper()
	if err := c.Ack(t.Context(), ds...); err != nil {
		t.Fatalf("Ack of %d deliveries: %v", len(ds), err)
	}
}

// receiveN receives until it holds n deliveries, failing when they do not arrive within
// arrive or when more than n come.
func receiveN(t *testing.T, c voting.Consumer, n, max int) []voting.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), arrive)
	defer cancel()
	var got []voting.Delivery
	for len(got) < n {
		ds, err := c.Receive(ctx, max)
		if err != nil {
			t.Fatalf("Receive after %d of %d deliveries: %v", len(got), n, err)
		}
		if len(ds) == 0 {
			t.Fatalf("Receive returned no deliveries and no error")
		}
		if len(ds) > max {
			t.Fatalf("Receive(max=%d) returned %d deliveries", max, len(ds))
		}
		got = append(got, ds...)
	}
	if len(got) > n {
		t.Fatalf("received %d deliveries, want %d", len(got), n)
	}
	return got
}

// expectNothing fails if c receives anything within d.
func expectNothing(t *testing.T, c voting.Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	ds, err := c.Receive(ctx, 100)
	if len(ds) > 0 {
		t.Fatalf("received %d unexpected deliveries, first %+v (attempts %d)", len(ds), ds[0].Vote, ds[0].Attempts)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on an empty queue: got error %v, want context.DeadlineExceeded", err)
	}
}

func checkVote(t *testing.T, got, want voting.Vote) {
	t.Helper()
	if got.VoterID != want.VoterID || got.Option != want.Option || !got.At.Equal(want.At) {
		t.Errorf("got vote %+v, want %+v", got, want)
	}
	if got.At.Location() != time.UTC {
		t.Errorf("vote time %v is in %v, want UTC", got.At, got.At.Location())
	}
}

func testPublishReceive(t *testing.T, q Queue) {
	c := q.NewConsumer(t, "c1")
	now := voting.Now()
	tests := []struct {
		name   string
		in     voting.Vote
		wantAt time.Time
	}{
		{"microseconds", voting.Vote{VoterID: "v1", Option: "a", At: now}, now},
		{"nanoseconds truncated", voting.Vote{VoterID: "v2", Option: "b", At: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)},
			time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)},
		{"other zone", voting.Vote{VoterID: "0123abcdef", Option: "opt_3-x", At: time.Date(2026, 6, 1, 8, 0, 0, 1000, time.FixedZone("X", 5*3600))},
			time.Date(2026, 6, 1, 3, 0, 0, 1000, time.UTC)},
	}
	for _, tt := range tests {
		mustPublish(t, q, tt.in)
	}
	ds := receiveN(t, c, len(tests), 10)
	ids := map[string]bool{}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ds[i]
			checkVote(t, d.Vote, voting.Vote{VoterID: tt.in.VoterID, Option: tt.in.Option, At: tt.wantAt})
			if d.Attempts != 1 {
				t.Errorf("got Attempts %d, want 1", d.Attempts)
			}
			if d.ID == "" || ids[d.ID] {
				t.Errorf("got ID %q, want a non-empty unique id", d.ID)
			}
			ids[d.ID] = true
		})
	}
	mustAck(t, c, ds...)
}

func testPublishRejectsInvalid(t *testing.T, q Queue) {
	tests := []struct {
		name string
		v    voting.Vote
		want error
	}{
		{"empty voter", voting.Vote{Option: "a", At: voting.Now()}, voting.ErrInvalidVoter},
		{"bad voter", voting.Vote{VoterID: "a b", Option: "a", At: voting.Now()}, voting.ErrInvalidVoter},
		{"bad option", voting.Vote{VoterID: "v1", Option: "", At: voting.Now()}, voting.ErrInvalidOption},
		{"zero time", voting.Vote{VoterID: "v1", Option: "a"}, voting.ErrInvalidTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := q.Publisher.Publish(t.Context(), tt.v)
			if !errors.Is(err, tt.want) {
				t.Errorf("Publish(%+v): got error %v, want %v", tt.v, err, tt.want)
			}
		})
	}
	expectNothing(t, q.NewConsumer(t, "c1"), ClaimTimeout)
}

func testPublishContext(t *testing.T, q Queue) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.Publisher.Publish(ctx, testVote(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context: got error %v, want context.Canceled", err)
	}
	// The publisher still works with a live context.
	mustPublish(t, q, testVote(2))
	c := q.NewConsumer(t, "c1")
	ds := receiveN(t, c, 1, 10)
	checkVote(t, ds[0].Vote, testVote(2))
	mustAck(t, c, ds...)
}

func testReceiveMax(t *testing.T, q Queue) {
	c := q.NewConsumer(t, "c1")
	for i := range 5 {
		mustPublish(t, q, testVote(i))
	}
	ctx, cancel := context.WithTimeout(t.Context(), arrive)
	defer cancel()
	var got []voting.Delivery
	for len(got) < 5 {
		ds, err := c.Receive(ctx, 2)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ds) < 1 || len(ds) > 2 {
			t.Fatalf("Receive(max=2) returned %d deliveries, want 1 or 2", len(ds))
		}
		got = append(got, ds...)
	}
	if len(got) != 5 {
		t.Fatalf("received %d deliveries, want 5", len(got))
	}
	for i, d := range got {
		checkVote(t, d.Vote, testVote(i))
	}
	mustAck(t, c, got...)
	expectNothing(t, c, ClaimTimeout)
}

func testReceiveBlocks(t *testing.T, q Queue) {
	c := q.NewConsumer(t, "c1")
	const delay = 200 * time.Millisecond
	start := time.Now()
	go func() {
		time.Sleep(delay)
		if err := q.Publisher.Publish(context.Background(), testVote(7)); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), arrive)
	defer cancel()
	ds, err := c.Receive(ctx, 10)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if elapsed := time.Since(start); elapsed < delay-20*time.Millisecond {
		t.Errorf("Receive returned after %v, before the vote was published (%v)", elapsed, delay)
	}
	if len(ds) != 1 {
		t.Fatalf("received %d deliveries, want 1", len(ds))
	}
	checkVote(t, ds[0].Vote, testVote(7))
	mustAck(t, c, ds...)
}

func testReceiveContext(t *testing.T, q Queue) {
	// A consumer blocked in Receive must notice a done context within about a second
	// (redisqueue blocks on the server for at most that long per call); 2s leaves room
	// for a busy machine.
	const prompt = 2 * time.Second
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 200*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(200*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"done before the call", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	}
	c := q.NewConsumer(t, "c1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			ds, err := c.Receive(ctx, 10)
			if len(ds) != 0 || !errors.Is(err, tt.want) {
				t.Fatalf("Receive on an empty queue: got %d deliveries and error %v, want %v", len(ds), err, tt.want)
			}
			if elapsed := time.Since(start); elapsed > 200*time.Millisecond+prompt {
				t.Errorf("Receive took %v to notice the done context", elapsed)
			}
		})
	}
}

func testReceiveAfterClose(t *testing.T, q Queue) {
	c := q.NewConsumer(t, "c1")
	errc := make(chan error, 1)
	go func() {
		_, err := c.Receive(t.Context(), 10)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, voting.ErrClosed) {
			t.Errorf("Receive blocked during Close: got %v, want voting.ErrClosed", err)
		}
	case <-time.After(arrive):
		t.Fatal("Receive still blocked after Close")
	}
	if _, err := c.Receive(t.Context(), 10); !errors.Is(err, voting.ErrClosed) {
		t.Errorf("Receive after Close: got %v, want voting.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testBatch(t *testing.T, q Queue) {
	const n, batch = 1000, 100
	for i := range n {
		mustPublish(t, q, testVote(i))
	}
	c := q.NewConsumer(t, "c1")
	ctx, cancel := context.WithTimeout(t.Context(), arrive)
	defer cancel()
	seen := map[string]bool{}
	next := 0
	for next < n {
		ds, err := c.Receive(ctx, batch)
		if err != nil {
			t.Fatalf("Receive after %d of %d: %v", next, n, err)
		}
		if len(ds) == 0 || len(ds) > batch {
			t.Fatalf("Receive(max=%d) returned %d deliveries", batch, len(ds))
		}
		for _, d := range ds {
			if seen[d.ID] {
				t.Fatalf("delivery %s received twice", d.ID)
			}
			seen[d.ID] = true
			if next >= n {
				t.Fatalf("received more than %d deliveries", n)
			}
			if d.Vote.VoterID != testVote(next).VoterID || d.Attempts != 1 {
				t.Fatalf("delivery %d: got voter %s attempts %d, want %s attempts 1 (in publish order)",
					next, d.Vote.VoterID, d.Attempts, testVote(next).VoterID)
			}
			next++
		}
		mustAck(t, c, ds...)
	}
	// Acknowledged deliveries never come back: not to this consumer, and not to another
	// one after this one is gone.
	expectNothing(t, c, ClaimTimeout)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectNothing(t, q.NewConsumer(t, "c2"), quiet)
}

func testDeadConsumer(t *testing.T, q Queue) {
	for i := range 3 {
		mustPublish(t, q, testVote(i))
	}
	c1 := q.NewConsumer(t, "c1")
	held := receiveN(t, c1, 3, 10)
	received := time.Now()
	mustAck(t, c1, held[0])
	if err := c1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	c2 := q.NewConsumer(t, "c2")
	got := receiveN(t, c2, 2, 10)
	if elapsed := time.Since(received); elapsed < ClaimTimeout-50*time.Millisecond {
		t.Errorf("deliveries of the closed consumer were handed out after %v, before the claim timeout %v", elapsed, ClaimTimeout)
	}
	for i, d := range got {
		want := held[i+1]
		if d.ID != want.ID {
			t.Errorf("redelivery %d: got id %s, want %s", i, d.ID, want.ID)
		}
		checkVote(t, d.Vote, want.Vote)
		if d.Attempts != 2 {
			t.Errorf("redelivery %d: got Attempts %d, want 2", i, d.Attempts)
		}
	}
	mustAck(t, c2, got...)
	expectNothing(t, c2, quiet)
}

func testLiveConsumer(t *testing.T, q Queue) {
	for i := range 2 {
		mustPublish(t, q, testVote(i))
	}
	c1 := q.NewConsumer(t, "c1")
	held := receiveN(t, c1, 2, 10)
	// c1 is alive and still working on its deliveries for several claim timeouts; c2
	// must not get them meanwhile.
	c2 := q.NewConsumer(t, "c2")
	expectNothing(t, c2, 4*ClaimTimeout)
	// Keeping them did not count as deliveries: when c1 dies after acknowledging one,
	// the other is on its second delivery.
	mustAck(t, c1, held[0])
	if err := c1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ds := receiveN(t, c2, 1, 10)
	if ds[0].ID != held[1].ID || ds[0].Attempts != 2 {
		t.Errorf("got delivery %s attempts %d, want %s attempts 2", ds[0].ID, ds[0].Attempts, held[1].ID)
	}
	checkVote(t, ds[0].Vote, testVote(1))
	mustAck(t, c2, ds...)
	// New votes still flow, as first deliveries.
	mustPublish(t, q, testVote(5))
	ds = receiveN(t, c2, 1, 10)
	checkVote(t, ds[0].Vote, testVote(5))
	if ds[0].Attempts != 1 {
		t.Errorf("got Attempts %d, want 1", ds[0].Attempts)
	}
	mustAck(t, c2, ds...)
	expectNothing(t, c2, quiet)
}

func testShare(t *testing.T, q Queue) {
	c1 := q.NewConsumer(t, "c1")
	c2 := q.NewConsumer(t, "c2")

	// While c1 holds deliveries, c2 gets other ones.
	for i := range 20 {
		mustPublish(t, q, testVote(i))
	}
	d1 := receiveN(t, c1, 10, 10)
	d2 := receiveN(t, c2, 10, 10)
	ids := map[string]string{}
	for _, d := range append(d1, d2...) {
		if ids[d.ID] != "" {
			t.Fatalf("delivery %s (%s) received twice", d.ID, d.Vote.VoterID)
		}
		ids[d.ID] = d.Vote.VoterID
	}
	mustAck(t, c1, d1...)
	mustAck(t, c2, d2...)

	// Concurrent publishers and consumers: every vote arrives once.
	const n, publishers = 400, 4
	var pub sync.WaitGroup
	for p := range publishers {
		pub.Go(func() {
			for i := p; i < n; i += publishers {
				if err := q.Publisher.Publish(t.Context(), testVote(1000+i)); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), arrive)
	defer cancel()
	var (
		mu   sync.Mutex
		got  = map[string]string{}
		per  = map[string]int{}
		done = make(chan struct{})
		once sync.Once
	)
	var cons sync.WaitGroup
	for name, c := range map[string]voting.Consumer{"c1": c1, "c2": c2} {
		cons.Go(func() {
			for {
				ds, err := c.Receive(ctx, 7)
				if err != nil {
					select {
					case <-done:
					default:
						t.Errorf("%s: Receive: %v", name, err)
					}
					return
				}
				mu.Lock()
				for _, d := range ds {
					if prev, dup := got[d.ID]; dup {
						t.Errorf("delivery %s (%s) received twice, by %s and %s", d.ID, d.Vote.VoterID, prev, name)
					}
					got[d.ID] = name
					per[name]++
				}
				all := len(got) >= n
				mu.Unlock()
				if err := c.Ack(context.Background(), ds...); err != nil {
					t.Errorf("%s: Ack: %v", name, err)
				}
				if all {
					once.Do(func() { close(done); cancel() })
					return
				}
			}
		})
	}
	pub.Wait()
	cons.Wait()
	if len(got) != n {
		t.Fatalf("received %d distinct deliveries, want %d", len(got), n)
	}
	t.Logf("shared %d deliveries: %v", n, per)
	expectNothing(t, c1, quiet)
}

func testDeadLetter(t *testing.T, q Queue) {
	for i := range 3 {
		mustPublish(t, q, testVote(i))
	}
	c1 := q.NewConsumer(t, "c1")
	ds := receiveN(t, c1, 3, 10)
	const reason = "store refused the vote: check constraint"
	if err := c1.DeadLetter(t.Context(), ds[1], reason); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	mustAck(t, c1, ds[0], ds[2])

	dls := q.DeadLetters(t)
	if len(dls) != 1 {
		t.Fatalf("got %d dead letters, want 1: %+v", len(dls), dls)
	}
	dl := dls[0]
	if dl.ID != ds[1].ID || dl.Reason != reason {
		t.Errorf("got dead letter id %q reason %q, want id %q reason %q", dl.ID, dl.Reason, ds[1].ID, reason)
	}
	if v, err := voting.DecodeMessage([]byte(dl.Body)); err != nil {
		t.Errorf("dead letter body %q: %v", dl.Body, err)
	} else {
		checkVote(t, v, testVote(1))
	}
	// Dead-lettered means acknowledged: it never comes back, even once c1 is gone.
	if err := c1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectNothing(t, q.NewConsumer(t, "c2"), quiet)
}

func testMaxDeliveries(t *testing.T, q Queue) {
	mustPublish(t, q, testVote(1))
	var id string
	for attempt := 1; attempt <= MaxDeliveries; attempt++ {
		c := q.NewConsumer(t, fmt.Sprintf("c%d", attempt))
		ds := receiveN(t, c, 1, 10)
		if ds[0].Attempts != attempt {
			t.Errorf("delivery %d: got Attempts %d", attempt, ds[0].Attempts)
		}
		if id != "" && ds[0].ID != id {
			t.Errorf("delivery %d: got id %s, want %s", attempt, ds[0].ID, id)
		}
		id = ds[0].ID
		if err := c.Close(); err != nil { // a consumer that dies on this vote every time
			t.Fatalf("Close: %v", err)
		}
	}
	last := q.NewConsumer(t, "last")
	expectNothing(t, last, 4*ClaimTimeout)
	dls := q.DeadLetters(t)
	want := fmt.Sprintf("delivered %d times without success", MaxDeliveries)
	if len(dls) != 1 || dls[0].ID != id || dls[0].Reason != want {
		t.Fatalf("got dead letters %+v, want one for %s with reason %q", dls, id, want)
	}
	if v, err := voting.DecodeMessage([]byte(dls[0].Body)); err != nil {
		t.Errorf("dead letter body %q: %v", dls[0].Body, err)
	} else {
		checkVote(t, v, testVote(1))
	}
}

func testMalformed(t *testing.T, q Queue) {
	if q.PublishRaw == nil {
		t.Skip("the queue holds only valid votes: it has no raw publishing path")
	}
	const at = `"2026-03-01T12:00:00.000001Z"`
	tests := []struct {
		name, body, wantReason string
	}{
		{"not JSON", `vote=a`, "invalid character"},
		{"empty", ``, "EOF"},
		{"wrong types", `{"voter_id":42,"vote":"a","at":` + at + `}`, "cannot unmarshal"},
		{"missing voter", `{"vote":"a","at":` + at + `}`, voting.ErrInvalidVoter.Error()},
		{"invalid option id", `{"voter_id":"v1","vote":"a b","at":` + at + `}`, voting.ErrInvalidOption.Error()},
		{"missing time", `{"voter_id":"v1","vote":"a"}`, "at:"},
		{"bad time", `{"voter_id":"v1","vote":"a","at":"yesterday"}`, "parsing time"},
		{"trailing data", `{"voter_id":"v1","vote":"a","at":` + at + `}{}`, "data after"},
		{"oversized", `{"voter_id":"v1","vote":"a","at":` + at + `,"pad":"` + strings.Repeat("x", voting.MaxMessageSize) + `"}`, "byte limit"},
	}
	// Each malformed message sits between good ones.
	mustPublish(t, q, testVote(0))
	for i, tt := range tests {
		q.PublishRaw(t, []byte(tt.body))
		mustPublish(t, q, testVote(i+1))
	}
	c := q.NewConsumer(t, "c1")
	ds := receiveN(t, c, len(tests)+1, 5)
	for i, d := range ds {
		checkVote(t, d.Vote, testVote(i))
	}
	mustAck(t, c, ds...)

	dls := q.DeadLetters(t)
	if len(dls) != len(tests) {
		t.Errorf("got %d dead letters, want %d", len(dls), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dl := range dls {
				if dl.Body == tt.body {
					if !strings.Contains(dl.Reason, tt.wantReason) {
						t.Errorf("got reason %q, want it to mention %q", dl.Reason, tt.wantReason)
					}
					if dl.ID == "" {
						t.Errorf("dead letter has no id of the original message")
					}
					return
				}
			}
			t.Errorf("no dead letter with body %.60q", tt.body)
		})
	}
	expectNothing(t, c, ClaimTimeout)
}

// testStats: the backlog counts what is not acknowledged, pending counts what a consumer
// holds, and the oldest pending age grows while it holds it.
func testStats(t *testing.T, q Queue) {
	for i := range 5 {
		mustPublish(t, q, testVote(i))
	}
	c := q.NewConsumer(t, "c1")
	ds, err := c.Receive(t.Context(), 3)
	if err != nil || len(ds) != 3 {
		t.Fatalf("Receive: %d, %v", len(ds), err)
	}
	if err := c.Ack(t.Context(), ds[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.DeadLetter(t.Context(), ds[1], "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	s, err := q.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Length != 3 || s.Pending != 1 || s.DeadLetters != 1 || s.OldestPendingAge < 10*time.Millisecond || s.OldestPendingAge > time.Minute {
		t.Errorf("got %+v, want length 3 (2 waiting, 1 held), pending 1, 1 dead letter, oldest pending age a few ms", s)
	}
}
