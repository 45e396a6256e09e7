package redisqueue

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Publishing is pipelined: concurrent Publish calls are gathered and sent to Redis together
// in one round trip, each caller still waiting for its own entry's answer. One XADD per
// round trip caps a vote service at what Redis answers one command at a time (about 85,000
// a second on two cores, less what HTTP leaves it); a pipeline of many costs Redis little more
// than one. Under light load a batch holds one vote, so nothing waits for company.
const (
	// publishers is how many pipelines may be in flight at once: enough to keep Redis busy
	// while another batch is being gathered, few enough that batches stay large.
	publishers = 4
	// maxPipeline bounds a batch, so one slow pipeline does not hold thousands of votes.
	maxPipeline = 256
)

var errQueueClosed = errors.New("redisqueue: queue closed")

// publishReq is one Publish waiting for its entry to be added.
type publishReq struct {
	ctx  context.Context
	body []byte
	done chan error
}

// pipeliner gathers publish requests and sends them in pipelines.
type pipeliner struct {
	client *redis.Client
	stream string
	reqs   chan publishReq
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

func newPipeliner(client *redis.Client, stream string) *pipeliner {
	p := &pipeliner{client: client, stream: stream, reqs: make(chan publishReq), stop: make(chan struct{})}
	for range publishers {
		p.wg.Go(p.loop)
	}
	return p
}

// add sends body as one stream entry and returns Redis's answer for it.
func (p *pipeliner) add(ctx context.Context, body []byte) error {
	r := publishReq{ctx: ctx, body: body, done: make(chan error, 1)}
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.stop:
		return errQueueClosed
	}
	// Once handed over, the entry may be sent whatever happens to ctx, so wait for the
	// answer: a caller must not report failure for a vote that was added.
	return <-r.done
}

func (p *pipeliner) loop() {
	batch := make([]publishReq, 0, maxPipeline)
	for {
		select {
		case r := <-p.reqs:
			batch = append(batch[:0], r)
		case <-p.stop:
			return
		}
	gather:
		for len(batch) < maxPipeline {
			select {
			case r := <-p.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		p.send(batch)
	}
}

// send adds the batch's entries in one pipeline and answers each request.
func (p *pipeliner) send(batch []publishReq) {
	pipe := p.client.Pipeline()
	cmds := make([]*redis.StringCmd, 0, len(batch))
	sent := make([]publishReq, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err // gone before it was sent: not added
			continue
		}
		cmds = append(cmds, pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: p.stream, Values: []any{Field, r.body}}))
		sent = append(sent, r)
	}
	if len(sent) == 0 {
		return
	}
	// The pipeline is not bound to any one caller's context: it carries other callers'
	// votes too. The client's own timeouts bound it.
	_, _ = pipe.Exec(context.Background())
	for i, r := range sent {
		r.done <- cmds[i].Err()
	}
}

// close stops the publishers; Publish calls from then on fail.
func (p *pipeliner) close() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}
