package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/votingapp/voting/internal/voting/votingtest"
)

// testRedis gives a test its own stream name on the test Redis, removed at cleanup.
type testRedis struct {
	url, stream string
	rdb         *redis.Client
}

func newTestRedis(t *testing.T) *testRedis {
	t.Helper()
	u := votingtest.RequireServer(t, "VOTING_TEST_REDIS_URL")
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	r := &testRedis{url: u, stream: "doctor-votes-" + hex.EncodeToString(b), rdb: redis.NewClient(opt)}
	t.Cleanup(func() {
		r.rdb.Del(context.Background(), r.stream, r.stream+":dead")
		r.rdb.Close()
	})
	return r
}

func (r *testRedis) config() Config {
	return Config{RedisURL: r.url, Stream: r.stream, Group: "workers", DeadLetterStream: r.stream + ":dead",
		Timeout: 2 * time.Second, ClaimTimeout: 30 * time.Second}
}

func (r *testRedis) check(t *testing.T, cfg Config) (Hop, Hop) {
	t.Helper()
	rh, wh := checkRedisAndWorker(context.Background(), cfg)
	t.Logf("redis %s: %s", rh.Status, rh.Message)
	t.Logf("worker %s: %s", wh.Status, wh.Message)
	return rh, wh
}

func (r *testRedis) do(t *testing.T, args ...any) {
	t.Helper()
	if err := r.rdb.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// read reads the stream as a worker of the group does, so that the consumer is seen now.
func (r *testRedis) read(t *testing.T, consumer string) []redis.XMessage {
	t.Helper()
	res, err := r.rdb.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: "workers", Consumer: consumer,
		Streams: []string{r.stream, ">"}, Count: 100, Block: -1}).Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	if len(res) == 0 {
		return nil
	}
	return res[0].Messages
}

func TestRedisAuthentication(t *testing.T) {
	r := newTestRedis(t)
	user := "doctor-" + r.stream[len("doctor-votes-"):]
	r.do(t, "ACL", "SETUSER", user, "on", ">right-password", "~*", "+@all")
	t.Cleanup(func() { r.rdb.Do(context.Background(), "ACL", "DELUSER", user) })
	u, _ := url.Parse(r.url)
	u.User = url.UserPassword(user, "wrong-password")
	cfg := r.config()
	cfg.RedisURL = u.String()
	rh, wh := r.check(t, cfg)
	wantBroken(t, rh, CauseAuth, "refused the password of --redis-url (authentication failed: WRONGPASS", "the password (or the ACL user) in the URL is wrong")
	if wh.Status != Skipped {
		t.Errorf("worker: got %s, want skipped while Redis refuses", wh.Status)
	}
	if strings.Contains(rh.Message+rh.Target, "wrong-password") {
		t.Errorf("the password shows: %+v", rh)
	}
}

func TestRedisNetwork(t *testing.T) {
	addr := closedPort(t)
	cfg := Config{RedisURL: "redis://" + addr + "/0", Stream: "votes", Group: "workers", DeadLetterStream: "votes:dead", Timeout: time.Second, ClaimTimeout: time.Second}
	rh, _ := checkRedisAndWorker(context.Background(), cfg)
	wantBroken(t, rh, CauseRefused, "the connection to "+addr+" was refused", "start Redis", "--redis-url")
	cfg.RedisURL = "redis://queue.doctor.invalid:6379/0"
	rh, _ = checkRedisAndWorker(context.Background(), cfg)
	wantBroken(t, rh, CauseDNS, "queue.doctor.invalid does not resolve")
}

// TestQueue breaks the queue's side of the pipeline one way after another on the test Redis.
func TestQueue(t *testing.T) {
	r := newTestRedis(t)
	ctx := context.Background()
	cfg := r.config()

	rh, wh := r.check(t, cfg)
	wantBroken(t, rh, CauseNoStream, "holds no stream \""+r.stream+"\" in database 0")
	if wh.Status != Skipped {
		t.Errorf("worker without a stream: %s, want skipped", wh.Status)
	}

	r.do(t, "RPUSH", r.stream, `{"vote":"a"}`)
	rh, _ = r.check(t, cfg)
	wantBroken(t, rh, CauseNoStream, "is a list, not a stream", "original app")
	r.do(t, "DEL", r.stream)

	r.do(t, "XADD", r.stream, "*", "message", "x")
	rh, wh = r.check(t, cfg)
	if rh.Status != OK {
		t.Fatalf("redis with the stream: %s %s", rh.Status, rh.Message)
	}
	wantBroken(t, wh, CauseNoConsumer, "has no consumer group \"workers\"", "(1 vote waiting)")

	r.do(t, "XGROUP", "CREATE", r.stream, "workers", "0")
	_, wh = r.check(t, cfg)
	wantBroken(t, wh, CauseNoConsumer, "no consumer in group \"workers\" of stream \""+r.stream+"\" (1 vote waiting)", "start a worker")

	// A consumer that took the vote, then went quiet for longer than the claim timeout
	// while another vote waits untaken.
	r.read(t, "worker-1")
	r.do(t, "XADD", r.stream, "*", "message", "x")
	time.Sleep(150 * time.Millisecond)
	short := cfg
	short.ClaimTimeout = 100 * time.Millisecond
	_, wh = r.check(t, short)
	wantBroken(t, wh, CauseNoConsumer, "no worker seen for", "longer than --claim-timeout 100ms, with 1 vote waiting untaken")

	// Seen a moment ago, holding its deliveries, taking nothing more: stuck.
	r.read(t, "worker-1")
	cfg.Sample = 300 * time.Millisecond
	_, wh = r.check(t, cfg)
	wantBroken(t, wh, CauseStuck, "2 votes waiting in stream", "(2 of them held by a worker)", "no worker took or recorded any in 300ms")

	// Votes keep coming and nobody takes them: the backlog grows.
	r.read(t, "worker-1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: r.stream, Values: []any{"message", "y"}})
			}
		}
	})
	_, wh = r.check(t, cfg)
	close(stop)
	wg.Wait()
	wantBroken(t, wh, CauseBacklog, "the backlog is growing: stream", "and no worker took any", "a worker was seen")

	// A worker that takes and records the votes: healthy.
	stop = make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var ids []string
			// Not r.read: t.Fatal belongs to the test's goroutine.
			res, _ := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "worker-2",
				Streams: []string{r.stream, ">"}, Count: 100, Block: -1}).Result()
			for _, st := range res {
				for _, m := range st.Messages {
					ids = append(ids, m.ID)
				}
			}
			pend, _ := r.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: r.stream, Group: "workers", Start: "-", End: "+", Count: 1000}).Result()
			for _, p := range pend {
				ids = append(ids, p.ID)
			}
			if len(ids) > 0 {
				r.rdb.XAck(ctx, r.stream, "workers", ids...)
				r.rdb.XDel(ctx, r.stream, ids...)
			}
		}
	})
	_, wh = r.check(t, cfg)
	close(stop)
	wg.Wait()
	if wh.Status != OK || !strings.Contains(wh.Message, "no dead letters") {
		t.Fatalf("worker recording: got %s %s, want ok", wh.Status, wh.Message)
	}

	// Dead letters: the sentence gives the redis-cli command that reads them; it works.
	r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: r.stream + ":dead", Values: []any{"id", "1-1", "body", "not json", "reason", "undecodable", "consumer", "worker-2"}})
	r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: r.stream + ":dead", Values: []any{"id", "1-2", "body", "{}", "reason", "undecodable", "consumer", "worker-2"}})
	cfg.Sample = 0
	_, wh = r.check(t, cfg)
	wantBroken(t, wh, CauseDeadLetters, "2 dead letters in "+r.stream+":dead", "XRANGE "+r.stream+":dead - + COUNT 10`", "VotingVotesDeadLettered")
	cmd := wh.Message[strings.Index(wh.Message, "`")+1:]
	cmd = cmd[:strings.Index(cmd, "`")]
	if _, err := exec.LookPath("redis-cli"); err == nil {
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "not json") || !strings.Contains(string(out), "undecodable") {
			t.Errorf("%s: %v\n%s", cmd, err, out)
		}
	}
}

// TestIdleQueue: a group no worker has taken a vote from yet, with none waiting, is not
// broken: Redis lists a worker only from its first vote (before 7.2), so a live worker of an
// idle deployment looks like none.
func TestIdleQueue(t *testing.T) {
	r := newTestRedis(t)
	r.do(t, "XGROUP", "CREATE", r.stream, "workers", "$", "MKSTREAM")
	cfg := r.config()
	cfg.Sample = 100 * time.Millisecond
	_, wh := r.check(t, cfg)
	if wh.Status != OK || !strings.Contains(wh.Message, "no worker has taken a vote yet, and none waits") {
		t.Fatalf("idle: %s %s, want ok", wh.Status, wh.Message)
	}
}

func TestRedisCLI(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"redis://127.0.0.1:6379/0", "redis-cli -h 127.0.0.1 -p 6379 XRANGE votes:dead - + COUNT 10"},
		{"redis://:secret@redis:6380/2", "redis-cli -h redis -p 6380 -n 2 --askpass XRANGE votes:dead - + COUNT 10"},
		{"rediss://voting:secret@[::1]:6379", "redis-cli -h ::1 -p 6379 --tls --user voting --askpass XRANGE votes:dead - + COUNT 10"},
	} {
		opt, err := redis.ParseURL(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := redisCLI(opt, "votes:dead"); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.url, got, tt.want)
		}
	}
	if got := shellWord("my votes:dead"); got != "'my votes:dead'" {
		t.Errorf("got %s", got)
	}
}
