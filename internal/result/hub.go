package result

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
)

// maxWriters bounds the goroutines that write snapshots to clients. A write to a client that
// reads normally returns at once (it only copies ~200 bytes into the kernel's socket buffer),
// so two writers would keep both cores busy; the others are there for clients whose socket
// buffer is full (hundreds of KiB not read): such a write waits up to writeTimeout, and it
// takes more than maxWriters of those at the same moment before the rest wait for a writer.
// (With 10,000 reading clients 2, 8 and 64 writers measured the same.) Writers exist only
// while there is something to write; 64 idle stacks would be 0.5 MB.
const maxWriters = 64

// hub fans the latest snapshot out to every connected client. It holds no goroutine per
// client for writing: a broadcast compiles the frame once and queues each client, and a small
// pool of writers writes the same bytes to each of them, with a deadline. A client holds at
// most one pending snapshot: a newer one replaces it, so a slow client always gets the latest
// numbers, never holds up the others and never grows memory.
type hub struct {
	sent           prometheus.Counter // snapshots written
	clientsDropped prometheus.Counter // clients closed because a write failed or timed out, or a dead peer
	log            *slog.Logger
	// writeTimeout and pingInterval are the constants of the same names; tests shorten them.
	writeTimeout, pingInterval time.Duration

	pingFrame, goingAway, protocolError []byte // compiled once

	// maxClients and maxPerAddr bound the clients at once, in all and per address (see
	// admit); 0 is no bound.
	maxClients, maxPerAddr int

	mu       sync.Mutex
	latest   []byte             // the encoded snapshot, nil before the first tally
	frame    []byte             // latest as a text frame
	conns    []*client          // connected clients; client.idx is the position
	admitted int                // places taken by admit and not yet given to add or release
	perAddr  map[netip.Addr]int // clients and admitted handshakes per address key
	closed   bool               // shutdown has begun: clients are told to go away
	live     sync.WaitGroup
	pinger   *time.Timer
	pending  []*client // publish's scratch list of clients to queue

	qmu     sync.Mutex
	queue   []*client // clients with something to write, each at most once
	qhead   int
	writers int
}

// client is one WebSocket connection. Only its reader goroutine reads conn; only the writer
// that took the client from the queue writes to it, so frames never interleave.
type client struct {
	conn net.Conn
	idx  int        // in hub.conns, under hub.mu
	addr netip.Addr // the address key it counts under in hub.perAddr; invalid: none

	hdr        [ws.MaxHeaderSize - 2]byte // the reader's header buffer
	fragmented bool                       // reader only: inside a fragmented data message

	deadline time.Time // the write deadline set on conn; only the writer holding c uses it

	mu     sync.Mutex
	next   []byte // the newest snapshot frame not written yet
	ctrl   []byte // a pong to write
	ping   bool   // a ping is due
	final  []byte // a close frame to write last; once set, the client takes no more snapshots
	queued bool   // in the queue or being written by a writer
	gone   bool   // closed and removed
	left   bool   // the peer sent a close: a failed write of the reply is not a drop
}

func newHub(sent, clientsDropped prometheus.Counter, log *slog.Logger, maxClients, maxPerAddr int) *hub {
	return &hub{
		maxClients:     maxClients,
		maxPerAddr:     maxPerAddr,
		perAddr:        map[netip.Addr]int{},
		sent:           sent,
		clientsDropped: clientsDropped,
		log:            log,
		writeTimeout:   writeTimeout,
		pingInterval:   pingInterval,
		pingFrame:      ws.MustCompileFrame(ws.NewPingFrame(nil)),
		goingAway:      ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "server stopping"))),
		protocolError:  ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusProtocolError, ""))),
	}
}

// publish makes b the latest snapshot and queues it for every client. It returns how many
// unwritten older snapshots it replaced.
func (h *hub) publish(b []byte) (replaced int) {
	frame, err := ws.CompileFrame(ws.NewTextFrame(b))
	if err != nil { // only for payloads over 2^63 bytes
		h.log.Error("compile websocket frame", "err", err)
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.latest, h.frame = b, frame
	if h.closed {
		return 0
	}
	h.queueAll(func(c *client) {
		if c.next != nil {
			replaced++
		}
		c.next = frame
	})
	return replaced
}

// queueAll marks every client with set and queues those not queued yet, in one push. h.mu
// must be held.
func (h *hub) queueAll(set func(*client)) {
	h.pending = h.pending[:0]
	for _, c := range h.conns {
		if c.mark(set) {
			h.pending = append(h.pending, c)
		}
	}
	h.push(h.pending...)
	clear(h.pending) // hold no client beyond its life
}

// mark calls set under c's lock to give it something to write, unless c takes no more
// frames (a close frame is pending, or it is gone). It reports whether the caller must push
// c: it was not queued, and now is.
func (c *client) mark(set func(*client)) (push bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.final != nil || c.gone {
		return false
	}
	set(c)
	push = !c.queued
	c.queued = true
	return push
}

// snapshot returns the latest snapshot, or nil before the first tally.
func (h *hub) snapshot() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.latest
}

func (h *hub) clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// Why admit refuses a client: the labels of voting_websocket_refused_total.
const (
	refusedProcess = "process_limit" // maxClients
	refusedAddr    = "client_limit"  // maxPerAddr
)

// addrKey is what the clients of one address count under: an IPv4 address, or an IPv6 /64,
// which one host or one home commonly has to itself (the rate limiter keys the same way).
// An invalid address is no key: it counts in the process's bound only.
func addrKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// admit takes a place for a client at addr before its handshake is answered, or says which
// bound refuses it (refusedProcess or refusedAddr) and how many the bound allows. A place
// taken is then given to add, or back with release. Handshakes in progress hold a place, so
// that many at once cannot pass a bound together.
func (h *hub) admit(addr netip.Addr) (refused string, limit int) {
	key := addrKey(addr)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.maxClients > 0 && len(h.conns)+h.admitted >= h.maxClients {
		return refusedProcess, h.maxClients
	}
	if key.IsValid() && h.maxPerAddr > 0 && h.perAddr[key] >= h.maxPerAddr {
		return refusedAddr, h.maxPerAddr
	}
	h.admitted++
	if key.IsValid() {
		h.perAddr[key]++
	}
	return "", 0
}

// release gives back a place admit took, for a handshake that did not become a client.
func (h *hub) release(addr netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.admitted--
	h.forget(addrKey(addr))
}

// forget lowers the count of the address key. h.mu must be held.
func (h *hub) forget(key netip.Addr) {
	if !key.IsValid() {
		return
	}
	if h.perAddr[key]--; h.perAddr[key] <= 0 {
		delete(h.perAddr, key)
	}
}

// add takes over an upgraded connection, in the place admit took for addr: it gets the
// latest snapshot at once, every new one, and a ping every pingInterval, until it leaves,
// fails a write or the hub shuts down.
func (h *hub) add(conn net.Conn, addr netip.Addr) {
	c := &client{conn: conn, addr: addrKey(addr)}
	h.mu.Lock()
	h.admitted--
	if h.closed {
		h.forget(c.addr)
		h.mu.Unlock()
		go func() { // not on the handler: the write may wait for the peer
			_ = conn.SetWriteDeadline(time.Now().Add(h.writeTimeout))
			_, _ = conn.Write(h.goingAway)
			_ = conn.Close()
		}()
		return
	}
	c.idx = len(h.conns)
	h.conns = append(h.conns, c)
	h.live.Add(1)
	if h.pinger == nil {
		h.pinger = time.AfterFunc(h.pingInterval, h.pingAll)
	}
	queue := h.frame != nil
	if queue {
		c.next, c.queued = h.frame, true
	}
	h.mu.Unlock()
	if queue {
		h.push(c)
	}
	go h.read(c)
}

// pingAll queues a ping for every client, and runs again after pingInterval. The ping goes
// the way snapshots go, so it never interleaves with one.
func (h *hub) pingAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.queueAll(func(c *client) { c.ping = true })
	h.pinger.Reset(h.pingInterval)
}

// closeWith makes frame the last thing written to c before it is closed. left says the peer
// closed first, so a failed write of frame does not count c as dropped.
func (h *hub) closeWith(c *client, frame []byte, left bool) {
	if c.mark(func(c *client) {
		c.final, c.next, c.ping = frame, nil, false
		c.left = left
	}) {
		h.push(c)
	}
}

// shutdown tells every client the server is going away (close status 1001), closes them and
// waits until they are closed, at most writeTimeout and a little more. New clients are told
// the same at once.
func (h *hub) shutdown() {
	h.mu.Lock()
	h.closed = true
	if h.pinger != nil {
		h.pinger.Stop()
	}
	conns := append([]*client(nil), h.conns...)
	h.mu.Unlock()
	for _, c := range conns {
		h.closeWith(c, h.goingAway, false)
	}
	done := make(chan struct{})
	go func() {
		h.live.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(h.writeTimeout + time.Second): // the writes have deadlines; this is a backstop
	}
}

// push queues clients (each marked queued by the caller) and starts writers for them, up to
// maxWriters.
func (h *hub) push(cs ...*client) {
	if len(cs) == 0 {
		return
	}
	h.qmu.Lock()
	h.queue = append(h.queue, cs...)
	start := min(maxWriters-h.writers, len(h.queue)-h.qhead)
	h.writers += start
	h.qmu.Unlock()
	for range start {
		go h.write()
	}
}

// write is one writer: it writes to queued clients until the queue is empty.
func (h *hub) write() {
	var bufs [4][]byte
	for {
		h.qmu.Lock()
		if h.qhead == len(h.queue) {
			clear(h.queue)
			h.queue, h.qhead = h.queue[:0], 0
			h.writers--
			h.qmu.Unlock()
			return
		}
		c := h.queue[h.qhead]
		h.queue[h.qhead] = nil
		h.qhead++
		if h.qhead >= 1024 && h.qhead*2 >= len(h.queue) { // keep the backing array bounded
			n := copy(h.queue, h.queue[h.qhead:])
			clear(h.queue[n:])
			h.queue, h.qhead = h.queue[:n], 0
		}
		h.qmu.Unlock()
		h.flush(c, bufs[:0])
	}
}

// flush writes what c has pending in one write, with a deadline.
func (h *hub) flush(c *client, bufs net.Buffers) {
	c.mu.Lock()
	if c.gone {
		c.queued = false
		c.mu.Unlock()
		return
	}
	ctrl, ping, next, final := c.ctrl, c.ping, c.next, c.final
	c.ctrl, c.ping, c.next = nil, false, nil
	if ctrl == nil && !ping && next == nil && final == nil {
		c.queued = false
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if ctrl != nil {
		bufs = append(bufs, ctrl)
	}
	if ping {
		bufs = append(bufs, h.pingFrame)
	}
	if next != nil {
		bufs = append(bufs, next)
	}
	if final != nil {
		bufs = append(bufs, final)
	}
	// Each write must end within writeTimeout, give or take a fifth: the deadline is renewed
	// only when less than that is left, so a client written to ten times a second costs one
	// deadline (a runtime timer update, 6 % of the CPU of a broadcast) every second, not ten.
	var err error
	if now := time.Now(); c.deadline.Sub(now) < h.writeTimeout-h.writeTimeout/5 {
		c.deadline = now.Add(h.writeTimeout)
		err = c.conn.SetWriteDeadline(c.deadline)
	}
	if err == nil {
		if len(bufs) == 1 {
			_, err = c.conn.Write(bufs[0])
		} else {
			_, err = bufs.WriteTo(c.conn) // one writev
		}
	}
	if err != nil {
		h.remove(c, writeFailed(err), err)
		return
	}
	if next != nil {
		h.sent.Inc()
	}
	if final != nil {
		h.remove(c, false, nil)
		return
	}
	c.mu.Lock()
	more := c.ctrl != nil || c.ping || c.next != nil || c.final != nil
	c.queued = more
	c.mu.Unlock()
	if more {
		h.push(c) // behind the others: one client's stream of snapshots does not starve them
	}
}

// writeFailed tells a failed write (a timeout: the client stopped reading) from a peer that
// has gone (reset or closed), which is a client leaving, not a drop.
func writeFailed(err error) bool {
	return !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET)
}

// remove closes c and forgets it. count says it is a drop (a failed or timed-out write, or a
// peer that answered no ping in time) rather than a client leaving.
func (h *hub) remove(c *client, count bool, err error) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	count = count && !c.left
	c.next, c.ctrl, c.final = nil, nil, nil
	c.mu.Unlock()
	_ = c.conn.Close()
	h.mu.Lock()
	last := h.conns[len(h.conns)-1]
	h.conns[c.idx], last.idx = last, c.idx
	h.conns[len(h.conns)-1] = nil
	h.conns = h.conns[:len(h.conns)-1]
	h.forget(c.addr)
	h.mu.Unlock()
	h.live.Done()
	if count {
		h.clientsDropped.Inc()
		h.log.Debug("websocket client dropped", "err", err)
	}
}

// read is c's reader goroutine: it answers pings, echoes a close and then stops, notes pongs
// (any frame renews the read deadline) and discards data, which the page never sends.
//
// The read deadline is two ping intervals: a client answers each ping with a pong, so that
// long without a frame means the peer is dead, gone without a FIN (a laptop lid, a lost
// route), and its connection is closed.
func (h *hub) read(c *client) {
	for {
		if err := c.conn.SetReadDeadline(time.Now().Add(2 * h.pingInterval)); err != nil {
			h.remove(c, false, err)
			return
		}
		hd, err := ws.ReadHeaderBuffer(c.conn, c.hdr[:])
		if err != nil {
			h.readFailed(c, err)
			return
		}
		state := ws.StateServerSide
		if c.fragmented {
			state = state.Set(ws.StateFragmented)
		}
		if err := ws.CheckHeader(hd, state); err != nil {
			h.closeWith(c, h.protocolError, false)
			return
		}
		if !hd.OpCode.IsControl() {
			c.fragmented = !hd.Fin
			if _, err := io.CopyN(io.Discard, c.conn, hd.Length); err != nil {
				h.readFailed(c, err)
				return
			}
			continue
		}
		p := make([]byte, hd.Length) // at most 125 bytes: CheckHeader has seen to it
		if _, err := io.ReadFull(c.conn, p); err != nil {
			h.readFailed(c, err)
			return
		}
		ws.Cipher(p, hd.Mask, 0)
		switch hd.OpCode {
		case ws.OpPing:
			pong := ws.MustCompileFrame(ws.NewPongFrame(p)) // a control payload always fits
			// Only the latest ping needs its pong (RFC 6455 5.5.3).
			if c.mark(func(c *client) { c.ctrl = pong }) {
				h.push(c)
			}
		case ws.OpClose:
			h.closeWith(c, closeReply(p, h.protocolError), true)
			return
		}
	}
}

// closeReply is the close frame that answers a client's close with payload p: its status
// echoed (RFC 6455 5.5.1), an empty close for an empty one, or protocolError for a bad one.
func closeReply(p, protocolError []byte) []byte {
	if len(p) == 0 {
		return ws.MustCompileFrame(ws.NewCloseFrame(nil))
	}
	code, reason := ws.ParseCloseFrameData(p)
	if len(p) < 2 || ws.CheckCloseFrameData(code, reason) != nil {
		return protocolError
	}
	return ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
}

// readFailed ends a client whose read failed: a timeout is a dead peer (counted as dropped),
// anything else the peer leaving or the connection closed here.
func (h *hub) readFailed(c *client, err error) {
	h.remove(c, errors.Is(err, os.ErrDeadlineExceeded), err)
}
