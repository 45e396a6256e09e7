package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// PushReport is what the WebSocket clients saw: how long each vote took from its 2xx to the
// first message on each client whose total counts it.
//
// The k-th acknowledged vote of the run makes the total base+k, so a client has seen that
// vote once it gets a message with total >= base+k. One (vote, client) pair is one sample:
// the latency is the time of that message minus the time of the k-th 2xx. This is exact as
// long as nothing else votes during the run and every vote is a new voter (Reuse 0), which
// is what Run requires in this mode. A message may arrive before the 2xx it counts (the
// worker can be faster than the HTTP answer); such samples count as 0.
type PushReport struct {
	Clients   int           `json:"clients"`    // clients connected when the votes started
	Connected int           `json:"connected"`  // clients still connected at the end
	BaseTotal int64         `json:"base_total"` // the total before the first vote
	Final     int64         `json:"final_total"`
	GotFinal  int           `json:"clients_with_final_total"` // clients that saw a total >= Final
	Messages  int64         `json:"messages"`                 // messages received after the votes started
	Samples   int64         `json:"samples"`                  // (vote, client) pairs measured
	Missed    int64         `json:"missed"`                   // pairs never seen: votes beyond a client's last total
	LastFinal time.Duration `json:"last_final_ns"`            // from the last 2xx to the last client seeing Final
	P50       time.Duration `json:"p50_ns"`
	P95       time.Duration `json:"p95_ns"`
	P99       time.Duration `json:"p99_ns"`
	Max       time.Duration `json:"max_ns"`
	Error     string        `json:"first_error,omitempty"`
}

// Push tuning.
const (
	// dialParallel bounds the handshakes in flight, so that 10,000 clients do not overflow
	// the server's accept backlog (commonly 4096) and count as failures.
	dialParallel = 64
	// pushBucket is the histogram's resolution: percentiles are exact to 10 µs, and the
	// histogram keeps memory flat whatever the clients × votes product (10,000 × 10,000
	// pairs would not fit as a sorted slice).
	pushBucket = 10 * time.Microsecond
	// pushBuckets covers 0 to 10 s; slower samples land in the last bucket, and Max is kept
	// exactly.
	pushBuckets = int(10 * time.Second / pushBucket)
)

// watcher is one WebSocket client on the result service.
type watcher struct {
	conn   *websocket.Conn
	latest atomic.Int64 // the latest total seen, -1 before the first message
	done   chan struct{}

	// Written by the reading goroutine only; read after done is closed.
	msgs []pushMsg
	err  error
}

type pushMsg struct {
	at    time.Time
	total int64
}

// watchers holds the clients.
type watchers struct {
	ws     []*watcher
	cancel context.CancelFunc
	from   atomic.Pointer[time.Time] // messages from here on are counted
}

// wsURL returns the WebSocket endpoint of the result service at base (http, https, ws or wss).
func wsURL(base string) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("loadgen: bad WebSocket URL %q", base)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("loadgen: bad WebSocket URL %q: want http(s) or ws(s)", base)
	}
	if !strings.HasSuffix(u.Path, "/ws") {
		u.Path += "/ws"
	}
	return u.String(), nil
}

// dialWatchers connects n clients and waits until each has its first snapshot. It fails
// when any client cannot connect: a run with fewer clients than asked measures something
// else.
func dialWatchers(ctx context.Context, base string, n int, timeout time.Duration) (*watchers, error) {
	u, err := wsURL(base)
	if err != nil {
		return nil, err
	}
	// One transport for all: the handshakes are ordinary HTTP requests, each on its own
	// connection that the WebSocket then keeps.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	rctx, cancel := context.WithCancel(context.Background())
	w := &watchers{ws: make([]*watcher, n), cancel: cancel}
	sem := make(chan struct{}, dialParallel)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for i := range w.ws {
		sem <- struct{}{}
		if ctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, dcancel := context.WithTimeout(ctx, timeout)
			defer dcancel()
			c, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: client})
			if err != nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("loadgen: WebSocket client %d of %d: %w", i+1, n, err) })
				return
			}
			ws := &watcher{conn: c, done: make(chan struct{})}
			ws.latest.Store(-1)
			w.ws[i] = ws
			go ws.read(rctx, w)
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		w.close()
		return nil, firstErr
	}
	// Each client gets the current snapshot on connect.
	deadline := time.Now().Add(timeout)
	for _, ws := range w.ws {
		for ws.latest.Load() < 0 {
			select {
			case <-ws.done:
				w.close()
				return nil, fmt.Errorf("loadgen: a WebSocket client closed before its first message: %v", ws.err)
			case <-ctx.Done():
				w.close()
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
			}
			if time.Now().After(deadline) {
				w.close()
				return nil, errors.New("loadgen: a WebSocket client got no snapshot in time (is the result service ready?)")
			}
		}
	}
	return w, nil
}

// read records each message's total and when it arrived, until the connection ends.
func (ws *watcher) read(ctx context.Context, w *watchers) {
	defer close(ws.done)
	var m struct {
		Total *int64 `json:"total"`
	}
	for {
		_, b, err := ws.conn.Read(ctx)
		at := time.Now()
		if err != nil {
			ws.err = err
			return
		}
		m.Total = nil
		if err := json.Unmarshal(b, &m); err != nil || m.Total == nil {
			ws.err = fmt.Errorf("message without a total: %.100q", b)
			return
		}
		if from := w.from.Load(); from != nil && !at.Before(*from) {
			ws.msgs = append(ws.msgs, pushMsg{at, *m.Total})
		}
		ws.latest.Store(*m.Total)
	}
}

// start marks the beginning of the votes and returns the total before them: the highest
// total any client has seen (they are equal when nothing else is voting).
func (w *watchers) start() int64 {
	now := time.Now()
	w.from.Store(&now)
	var base int64
	for _, ws := range w.ws {
		base = max(base, ws.latest.Load())
	}
	return base
}

// waitFinal waits until every connected client has seen final, or for wait at most.
func (w *watchers) waitFinal(ctx context.Context, final int64, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all := true
		for _, ws := range w.ws {
			select {
			case <-ws.done:
				continue // gone; counted as not having the final total
			default:
			}
			if ws.latest.Load() < final {
				all = false
				break
			}
		}
		if all {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *watchers) close() {
	w.cancel()
	for _, ws := range w.ws {
		if ws == nil {
			continue
		}
		ws.conn.CloseNow()
		<-ws.done
	}
}

// report computes the push latencies from the clients' messages and the 2xx times (acks[k]
// is when the (k+1)-th vote was acknowledged; acks is in time order).
func (w *watchers) report(base, final int64, acks []time.Time) *PushReport {
	r := &PushReport{Clients: len(w.ws), BaseTotal: base, Final: final}
	hist := make([]int64, pushBuckets)
	var lastFinal time.Time
	for _, ws := range w.ws {
		if ws.err == nil || errors.Is(ws.err, context.Canceled) || websocket.CloseStatus(ws.err) == websocket.StatusNormalClosure {
			r.Connected++
		} else if r.Error == "" {
			r.Error = ws.err.Error()
		}
		seen := int64(0) // votes of this run this client has seen
		gotFinal := false
		for _, m := range ws.msgs {
			r.Messages++
			upTo := min(m.total-base, int64(len(acks)))
			for k := seen; k < upTo; k++ {
				d := max(m.at.Sub(acks[k]), 0)
				r.Samples++
				r.Max = max(r.Max, d)
				hist[min(int(d/pushBucket), pushBuckets-1)]++
			}
			seen = max(seen, upTo)
			if !gotFinal && m.total >= final {
				gotFinal = true
				if m.at.After(lastFinal) {
					lastFinal = m.at
				}
			}
		}
		if gotFinal {
			r.GotFinal++
		}
		r.Missed += int64(len(acks)) - seen
	}
	if len(acks) > 0 && !lastFinal.IsZero() {
		r.LastFinal = max(lastFinal.Sub(acks[len(acks)-1]), 0)
	}
	r.P50, r.P95, r.P99 = histPercentile(hist, r.Samples, 50), histPercentile(hist, r.Samples, 95), histPercentile(hist, r.Samples, 99)
	return r
}

// histPercentile returns the upper bound of the bucket that holds the p-th percentile.
func histPercentile(hist []int64, n int64, p int) time.Duration {
	if n == 0 {
		return 0
	}
	rank := (n*int64(p) + 99) / 100 // the rank-th smallest sample, 1-based
	var c int64
	for i, h := range hist {
		c += h
		if c >= rank {
			return time.Duration(i+1) * pushBucket
		}
	}
	return time.Duration(len(hist)) * pushBucket
}
