package redisqueue_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/votingapp/voting/internal/redisqueue"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

// newTestQueue returns a queue on a stream of its own, deleted with its dead letters when
// the test ends; tests of other packages may share the server, so nothing else is touched.
func newTestQueue(t testing.TB, cfg redisqueue.Config) (*redisqueue.Queue, *redis.Client, redisqueue.Config) {
	t.Helper()
	url := votingtest.RequireServer(t, "VOTING_TEST_REDIS_URL")
	if cfg.URL == "" {
		cfg.URL = url
	}
	cfg.Stream = "votingtest:" + rand.Text()[:12]
	cfg.DeadLetterStream = cfg.Stream + ":dead"
	q, err := redisqueue.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(opt)
	t.Cleanup(func() {
		q.Close()
		if err := admin.Del(context.Background(), cfg.Stream, cfg.DeadLetterStream).Err(); err != nil {
			t.Errorf("delete test streams: %v", err)
		}
		admin.Close()
	})
	return q, admin, cfg
}

func contractConfig() redisqueue.Config {
	return redisqueue.Config{ClaimTimeout: votingtest.ClaimTimeout, MaxDeliveries: votingtest.MaxDeliveries}
}

func TestQueueContract(t *testing.T) {
	votingtest.TestQueue(t, func(t *testing.T) votingtest.Queue {
		q, _, _ := newTestQueue(t, contractConfig())
		return votingtest.Queue{
			Publisher: q,
			Stats:     q.Stats,
			NewConsumer: func(t *testing.T, name string) voting.Consumer {
				c := q.Consumer(name)
				t.Cleanup(func() { c.Close() })
				return c
			},
			DeadLetters: func(t *testing.T) []voting.DeadLetter {
				dls, err := q.DeadLetters(context.Background(), 0)
				if err != nil {
					t.Fatalf("DeadLetters: %v", err)
				}
				return dls
			},
			PublishRaw: func(t *testing.T, body []byte) {
				if err := q.PublishRaw(t.Context(), body); err != nil {
					t.Fatalf("PublishRaw: %v", err)
				}
			},
		}
	})
}

func vote(i int) voting.Vote {
	return voting.Vote{VoterID: fmt.Sprintf("v%d", i), Option: "a", At: voting.Now()}
}

// proxy forwards TCP connections to target until stopped; then its port is closed and its
// connections are cut, as when the server goes away.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(out, in); out.Close() })
			p.wg.Go(func() { io.Copy(in, out); in.Close() })
		}
	})
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// When Redis goes away, Publish fails quickly with an error the vote service turns into a
// 503, rather than hanging or pretending the vote was queued.
func TestPublishServerGone(t *testing.T) {
	url := votingtest.RequireServer(t, "VOTING_TEST_REDIS_URL")
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, opt.Addr)
	proxied := strings.Replace(url, opt.Addr, p.ln.Addr().String(), 1)
	q, _, _ := newTestQueue(t, redisqueue.Config{URL: proxied})
	if err := q.Publish(t.Context(), vote(1)); err != nil {
		t.Fatalf("Publish through the proxy: %v", err)
	}
	p.stop()

	start := time.Now()
	err = q.Publish(t.Context(), vote(2))
	if !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Publish to a closed port: got %v, want an error wrapping voting.ErrUnavailable", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Publish to a closed port took %v", elapsed)
	} else {
		t.Logf("Publish to a closed port failed after %v: %v", elapsed, err)
	}
	if err := q.Ping(t.Context()); !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Ping to a closed port: got %v, want an error wrapping voting.ErrUnavailable", err)
	}
	c := q.Consumer("c1")
	defer c.Close()
	if _, err := c.Receive(t.Context(), 1); !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Receive from a closed port: got %v, want an error wrapping voting.ErrUnavailable", err)
	}
}

func TestNewUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// Unreachable is not fatal: the queue starts, Ping and Publish fail fast until Redis is
	// there, so the service can report not-ready instead of crash-looping.
	q, err := redisqueue.New(ctx, redisqueue.Config{URL: "redis://" + addr})
	if err != nil {
		t.Fatalf("New with nothing listening: %v, want a queue that reports not ready", err)
	}
	defer q.Close()
	if err := q.Ping(ctx); !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Ping with nothing listening: got %v, want ErrUnavailable", err)
	}
	if err := q.Publish(ctx, voting.Vote{VoterID: "v1", Option: "a", At: voting.Now()}); !errors.Is(err, voting.ErrUnavailable) {
		t.Errorf("Publish with nothing listening: got %v, want ErrUnavailable", err)
	}
	if _, err := redisqueue.New(ctx, redisqueue.Config{}); err == nil {
		t.Fatal("New without a URL succeeded")
	}
	if _, err := redisqueue.New(ctx, redisqueue.Config{URL: "http://x"}); err == nil {
		t.Fatal("New with a non-Redis URL succeeded")
	}
}

// An entry without the message field (written by something else) is dead-lettered, and the
// votes around it are delivered.
func TestEntryWithoutMessageField(t *testing.T) {
	q, admin, cfg := newTestQueue(t, contractConfig())
	if err := q.Publish(t.Context(), vote(1)); err != nil {
		t.Fatal(err)
	}
	if err := admin.XAdd(t.Context(), &redis.XAddArgs{Stream: cfg.Stream, Values: []any{"vote", "a"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(t.Context(), vote(2)); err != nil {
		t.Fatal(err)
	}
	c := q.Consumer("c1")
	defer c.Close()
	var got []voting.Delivery
	for len(got) < 2 {
		ds, err := c.Receive(t.Context(), 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ds...)
	}
	if got[0].Vote.VoterID != "v1" || got[1].Vote.VoterID != "v2" {
		t.Errorf("got %+v, want v1 and v2", got)
	}
	dls, err := q.DeadLetters(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, `no "message" field`) {
		t.Errorf("got dead letters %+v, want one saying the message field is missing", dls)
	}
}

// A stream deleted under a running consumer (or lost with a Redis restart without
// persistence) is recreated with its group, and votes flow again.
func TestGroupRecreated(t *testing.T) {
	q, admin, cfg := newTestQueue(t, contractConfig())
	c := q.Consumer("c1")
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Receive(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on an empty stream: %v", err)
	}
	if err := admin.Del(t.Context(), cfg.Stream).Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan []voting.Delivery, 1)
	go func() {
		for {
			ds, err := c.Receive(ctx, 1)
			if err != nil && ctx.Err() != nil {
				done <- nil
				return
			}
			if len(ds) > 0 {
				done <- ds
				return
			}
		}
	}()
	// Once the consumer has met the missing group, publish: the vote lands in a stream
	// without the group, and is delivered all the same, since the group is created from the
	// start of the stream.
	time.Sleep(300 * time.Millisecond)
	if err := q.Publish(t.Context(), vote(7)); err != nil {
		t.Fatal(err)
	}
	ds := <-done
	if len(ds) != 1 || ds[0].Vote.VoterID != "v7" {
		t.Fatalf("after the stream was deleted: got %+v, want v7", ds)
	}
}
