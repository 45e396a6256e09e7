package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
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
	// watchBuffer is each client's read buffer: a snapshot of a few options is some 200
	// bytes, so one read takes a whole frame, and 10,000 clients hold 5 MB.
	watchBuffer = 512
	// maxPushMessage bounds a message the client accepts, against a server gone wrong.
	maxPushMessage = 1 << 20
)

// watcher is one WebSocket client on the result service: one goroutine that reads, answers
// pings, and keeps each message's total and arrival time.
type watcher struct {
	conn   net.Conn
	br     *bufio.Reader
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
	ws      []*watcher
	closing atomic.Bool               // set by close: read errors from then on are ours
	from    atomic.Pointer[time.Time] // messages from here on are counted
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
func dialWatchers(ctx context.Context, base string, n int, timeout time.Duration, dial func(string) string) (*watchers, error) {
	u, err := wsURL(base)
	if err != nil {
		return nil, err
	}
	// Small handshake buffers (the server's answer is some 130 bytes): when the server's first
	// frame arrives with the answer, the dialer hands back its buffer, which then serves as
	// the client's read buffer.
	d := ws.Dialer{ReadBufferSize: watchBuffer, WriteBufferSize: watchBuffer,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, dial(addr))
		}}
	w := &watchers{ws: make([]*watcher, n)}
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
			c, br, _, err := d.Dial(dctx, u)
			if err != nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("loadgen: WebSocket client %d of %d: %w", i+1, n, err) })
				return
			}
			if br == nil || br.Size() != watchBuffer {
				if br != nil { // cannot happen with the pool's power-of-two sizes; keep what it holds
					c = &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(peekAll(br)), c)}
				}
				br = bufio.NewReaderSize(c, watchBuffer)
			}
			wt := &watcher{conn: c, br: br, done: make(chan struct{})}
			wt.latest.Store(-1)
			w.ws[i] = wt
			go wt.read(w)
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
	for _, wt := range w.ws {
		for wt.latest.Load() < 0 {
			select {
			case <-wt.done:
				w.close()
				return nil, fmt.Errorf("loadgen: a WebSocket client closed before its first message: %v", wt.err)
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

// prefixConn reads r (bytes already read from Conn, then Conn) and writes to Conn.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// peekAll returns a copy of what br holds.
func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// read records each message's total and when it arrived, until the connection ends. It
// answers pings (so a long run is not dropped as a dead peer) and echoes a close.
func (wt *watcher) read(w *watchers) {
	defer close(wt.done)
	var hdr [ws.MaxHeaderSize - 2]byte
	var msg []byte // the message being read, reused
	for {
		h, err := ws.ReadHeaderBuffer(wt.br, hdr[:])
		if err != nil {
			wt.err = err
			return
		}
		if err := ws.CheckHeader(h, ws.StateClientSide); err != nil {
			wt.err = err
			return
		}
		if int64(len(msg))+h.Length > maxPushMessage {
			wt.err = fmt.Errorf("message over %d bytes", maxPushMessage)
			return
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(wt.br, msg[start:]); err != nil {
			wt.err = err
			return
		}
		at := time.Now()
		switch h.OpCode {
		case ws.OpPing:
			err = wsutil.WriteClientMessage(wt.conn, ws.OpPong, msg[start:])
			msg = msg[:start]
			if err != nil {
				wt.err = err
				return
			}
			continue
		case ws.OpPong:
			msg = msg[:start]
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(msg[start:])
			_ = wsutil.WriteClientMessage(wt.conn, ws.OpClose, ws.NewCloseFrameBody(code, ""))
			wt.err = wsutil.ClosedError{Code: code, Reason: reason}
			return
		}
		if !h.Fin {
			continue // the rest of the message follows
		}
		total, ok := messageTotal(msg)
		if !ok {
			wt.err = fmt.Errorf("message without a total: %.100q", msg)
			return
		}
		msg = msg[:0]
		if from := w.from.Load(); from != nil && !at.Before(*from) {
			wt.msgs = append(wt.msgs, pushMsg{at, total})
		}
		wt.latest.Store(total)
	}
}

// messageTotal reads the "total" of a result message without decoding the rest: 10,000
// clients decode every message, on the same cores as the service measured. The key cannot
// occur inside a label, where JSON escapes the quotes.
func messageTotal(b []byte) (int64, bool) {
	const key = `"total":`
	i := bytes.LastIndex(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(b[i+len(key):], " ")
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	return n, err == nil
}

// start marks the beginning of the votes and returns the total before them: the highest
// total any client has seen (they are equal when nothing else is voting).
func (w *watchers) start() int64 {
	now := time.Now()
	w.from.Store(&now)
	var base int64
	for _, wt := range w.ws {
		base = max(base, wt.latest.Load())
	}
	return base
}

// waitFinal waits until every connected client has seen final, or for wait at most.
func (w *watchers) waitFinal(ctx context.Context, final int64, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all := true
		for _, wt := range w.ws {
			select {
			case <-wt.done:
				continue // gone; counted as not having the final total
			default:
			}
			if wt.latest.Load() < final {
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
	w.closing.Store(true)
	for _, wt := range w.ws {
		if wt == nil {
			continue
		}
		wt.conn.Close()
		<-wt.done
	}
}

// report computes the push latencies from the clients' messages and the 2xx times (acks[k]
// is when the (k+1)-th vote was acknowledged; acks is in time order).
func (w *watchers) report(base, final int64, acks []time.Time) *PushReport {
	r := &PushReport{Clients: len(w.ws), BaseTotal: base, Final: final}
	hist := make([]int64, pushBuckets)
	var lastFinal time.Time
	for _, wt := range w.ws {
		var closed wsutil.ClosedError
		if wt.err == nil || (w.closing.Load() && errors.Is(wt.err, net.ErrClosed)) || (errors.As(wt.err, &closed) && closed.Code == ws.StatusNormalClosure) {
			r.Connected++
		} else if r.Error == "" {
			r.Error = wt.err.Error()
		}
		seen := int64(0) // votes of this run this client has seen
		gotFinal := false
		for _, m := range wt.msgs {
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
