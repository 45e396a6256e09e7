package result

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// newTestHub returns a hub with short timings and shuts it down when the test ends.
func newTestHub(t *testing.T, writeTimeout, pingInterval time.Duration) *hub {
	t.Helper()
	h := newHub(prometheus.NewCounter(prometheus.CounterOpts{Name: "sent"}),
		prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"}), slog.New(slog.DiscardHandler), 0, 0)
	h.writeTimeout, h.pingInterval = writeTimeout, pingInterval
	t.Cleanup(h.shutdown)
	return h
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// frame is what a test client got from the hub.
type frame struct {
	op      ws.OpCode
	payload string
}

// peer is the browser's end of a connection the hub holds: a net.Pipe, which hands each
// write straight to the reader, so a peer that does not read stalls the hub's write to it
// at once, as a full socket buffer does.
type peer struct {
	conn   net.Conn
	frames chan frame // filled by readFrames
	err    chan error
}

func newPeer(t *testing.T, h *hub) *peer {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { client.Close() })
	if refused, _ := h.admit(netip.Addr{}); refused != "" {
		t.Fatalf("admit: refused by %s", refused)
	}
	h.add(server, netip.Addr{})
	return &peer{conn: client, frames: make(chan frame, 1000), err: make(chan error, 1)}
}

// readFrames reads the hub's frames into p.frames until the connection ends.
func (p *peer) readFrames() *peer {
	go func() {
		for {
			hd, err := ws.ReadHeader(p.conn)
			if err != nil {
				p.err <- err
				return
			}
			b := make([]byte, hd.Length)
			if _, err := io.ReadFull(p.conn, b); err != nil {
				p.err <- err
				return
			}
			if hd.Masked {
				p.err <- errors.New("the server masked a frame")
				return
			}
			p.frames <- frame{hd.OpCode, string(b)}
		}
	}()
	return p
}

// next returns the next frame, failing the test after timeout.
func (p *peer) next(t *testing.T, timeout time.Duration) frame {
	t.Helper()
	select {
	case f := <-p.frames:
		return f
	case err := <-p.err:
		select {
		case f := <-p.frames: // sent before the error
			p.err <- err
			return f
		default:
		}
		t.Fatalf("connection ended: %v", err)
	case <-time.After(timeout):
		t.Fatalf("no frame within %v", timeout)
	}
	return frame{}
}

// nextData skips pings and returns the next data frame's payload.
func (p *peer) nextData(t *testing.T, timeout time.Duration) string {
	t.Helper()
	for {
		if f := p.next(t, timeout); f.op == ws.OpText {
			return f.payload
		} else if f.op != ws.OpPing {
			t.Fatalf("got a frame of op %v (%q), want text", f.op, f.payload)
		}
	}
}

// send writes a frame as a browser does (masked).
func (p *peer) send(t *testing.T, op ws.OpCode, payload []byte) {
	t.Helper()
	if err := ws.WriteFrame(p.conn, ws.MaskFrame(ws.NewFrame(op, true, payload))); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// waitFor polls cond for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closeCode parses a close frame's status.
func closeCode(f frame) ws.StatusCode {
	code, _ := ws.ParseCloseFrameData([]byte(f.payload))
	return code
}

// TestFanOutSlowClientIsDropped: a client that does not read at all holds up nobody: the
// others get every snapshot at once, and it is dropped after writeTimeout and counted.
func TestFanOutSlowClientIsDropped(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	h := newTestHub(t, writeTimeout, time.Hour)
	slow := newPeer(t, h) // never reads
	var fast []*peer
	for range 5 {
		fast = append(fast, newPeer(t, h).readFrames())
	}
	start := time.Now()
	for i := range 50 {
		want := fmt.Sprintf(`{"total":%d}`, i)
		h.publish([]byte(want))
		for j, p := range fast {
			if got := p.nextData(t, 200*time.Millisecond); got != want {
				t.Fatalf("fast client %d: got %s, want %s", j, got, want)
			}
		}
	}
	if took := time.Since(start); took > writeTimeout {
		t.Errorf("50 snapshots to the fast clients took %v, more than the slow client's write timeout", took)
	}
	waitFor(t, 3*writeTimeout, "slow client dropped", func() bool { return counterValue(h.clientsDropped) == 1 })
	if n := h.clients(); n != 5 {
		t.Errorf("clients after the drop: %d, want 5", n)
	}
	_ = slow.conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := slow.conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("dropped client's connection: %v, want EOF (closed)", err)
	}
	if got := counterValue(h.sent); got != 250 {
		t.Errorf("snapshots sent: %v, want 250 (50 to each of 5 fast clients)", got)
	}
}

// TestFanOutLaggingClientGetsTheLatest: a client that stops reading for less than
// writeTimeout then gets the snapshot being written and the newest one, none in between, and
// each one skipped is counted.
func TestFanOutLaggingClientGetsTheLatest(t *testing.T) {
	h := newTestHub(t, 5*time.Second, time.Hour)
	lag := newPeer(t, h)
	replaced := h.publish([]byte("snapshot 0"))
	c := h.conns[0]
	waitFor(t, time.Second, "first write in flight", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.next == nil
	})
	for i := 1; i < 50; i++ {
		replaced += h.publish(fmt.Appendf(nil, "snapshot %d", i))
	}
	if replaced != 48 {
		t.Errorf("replaced: %d, want 48 (all but the one in flight and the newest)", replaced)
	}
	lag.readFrames()
	if got := lag.nextData(t, time.Second); got != "snapshot 0" {
		t.Fatalf("first: %q, want snapshot 0, the write in flight", got)
	}
	if got := lag.nextData(t, time.Second); got != "snapshot 49" {
		t.Fatalf("then: %q, want the newest, snapshot 49", got)
	}
	select {
	case f := <-lag.frames:
		t.Fatalf("a backlog: %q", f.payload)
	case <-time.After(50 * time.Millisecond):
	}
	if d := counterValue(h.clientsDropped); d != 0 {
		t.Errorf("clients dropped: %v, want 0", d)
	}
}

// TestNewClientGetsTheLatest: the snapshot comes on connect, without waiting for a change.
func TestNewClientGetsTheLatest(t *testing.T) {
	h := newTestHub(t, time.Second, time.Hour)
	if h.snapshot() != nil {
		t.Fatal("snapshot before any publish")
	}
	h.publish([]byte("old"))
	h.publish([]byte("latest"))
	p := newPeer(t, h).readFrames()
	if got := p.nextData(t, time.Second); got != "latest" {
		t.Fatalf("on connect: %q, want latest", got)
	}
	if got := string(h.snapshot()); got != "latest" {
		t.Errorf("snapshot: %q", got)
	}
}

// TestShutdownSaysGoingAway: every client gets a 1001 close, then its connection is closed;
// one that comes after gets the same at once.
func TestShutdownSaysGoingAway(t *testing.T) {
	h := newTestHub(t, time.Second, time.Hour)
	h.publish([]byte("x"))
	var ps []*peer
	for range 3 {
		p := newPeer(t, h).readFrames()
		if got := p.nextData(t, time.Second); got != "x" {
			t.Fatalf("on connect: %q", got)
		}
		ps = append(ps, p)
	}
	start := time.Now()
	h.shutdown()
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("shutdown took %v", took)
	}
	for i, p := range append(ps, newPeer(t, h).readFrames()) {
		f := p.next(t, time.Second)
		if f.op != ws.OpClose || closeCode(f) != ws.StatusGoingAway {
			t.Errorf("client %d: got op %v code %v, want a close with 1001", i, f.op, closeCode(f))
		}
		select {
		case err := <-p.err:
			if !errors.Is(err, io.EOF) {
				t.Errorf("client %d after the close: %v, want EOF", i, err)
			}
		case <-time.After(time.Second):
			t.Errorf("client %d: connection still open after the close", i)
		}
	}
	if n := h.clients(); n != 0 {
		t.Errorf("clients after shutdown: %d", n)
	}
	if d := counterValue(h.clientsDropped); d != 0 {
		t.Errorf("clients dropped: %v, want 0 (going away is not a drop)", d)
	}
}

// TestPingPong: the hub pings every interval; a client that answers stays, one that does not
// is dropped after two intervals; a client's ping gets its payload back in a pong.
func TestPingPong(t *testing.T) {
	const interval = 100 * time.Millisecond
	h := newTestHub(t, time.Second, interval)
	answers := newPeer(t, h).readFrames()
	silent := newPeer(t, h).readFrames()
	answers.send(t, ws.OpPing, []byte("hello"))
	if f := answers.next(t, time.Second); f.op != ws.OpPong || f.payload != "hello" {
		t.Fatalf("answer to a ping: op %v %q, want a pong with hello", f.op, f.payload)
	}
	pings := 0
	deadline := time.Now().Add(5 * interval)
	for time.Now().Before(deadline) {
		select {
		case f := <-answers.frames:
			if f.op == ws.OpPing {
				pings++
				answers.send(t, ws.OpPong, nil)
			}
		case <-silent.frames: // reads, never answers
		case <-time.After(10 * time.Millisecond):
		}
	}
	if pings < 3 {
		t.Errorf("pings in %v: %d, want one per %v", 5*interval, pings, interval)
	}
	waitFor(t, time.Second, "silent client dropped", func() bool { return h.clients() == 1 })
	if d := counterValue(h.clientsDropped); d != 1 {
		t.Errorf("clients dropped: %v, want 1 (the one that never answered a ping)", d)
	}
}

// TestClientFrames: a close is echoed and the client removed without counting it as a drop;
// data frames are discarded; a frame that breaks the protocol gets a 1002 close.
func TestClientFrames(t *testing.T) {
	h := newTestHub(t, time.Second, time.Hour)
	p := newPeer(t, h).readFrames()
	p.send(t, ws.OpText, []byte("ignored"))
	h.publish([]byte("after data"))
	if got := p.nextData(t, time.Second); got != "after data" {
		t.Fatalf("after a data frame: %q", got)
	}
	p.send(t, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
	if f := p.next(t, time.Second); f.op != ws.OpClose || closeCode(f) != ws.StatusNormalClosure {
		t.Fatalf("answer to a close: op %v code %v, want the close echoed", f.op, closeCode(f))
	}
	waitFor(t, time.Second, "closed client removed", func() bool { return h.clients() == 0 })

	bad := newPeer(t, h).readFrames()
	bad.nextData(t, time.Second) // the snapshot on connect
	// The hub stops reading at the header, so the pipe never takes the payload.
	go ws.WriteFrame(bad.conn, ws.NewTextFrame([]byte("unmasked")))
	if f := bad.next(t, time.Second); f.op != ws.OpClose || closeCode(f) != ws.StatusProtocolError {
		t.Fatalf("answer to an unmasked frame: op %v code %v, want 1002", f.op, closeCode(f))
	}
	waitFor(t, time.Second, "bad client removed", func() bool { return h.clients() == 0 })
	if d := counterValue(h.clientsDropped); d != 0 {
		t.Errorf("clients dropped: %v, want 0", d)
	}
}

// TestClientLeaves: a client that goes without a close is removed and not counted.
func TestClientLeaves(t *testing.T) {
	h := newTestHub(t, time.Second, time.Hour)
	p := newPeer(t, h)
	p.conn.Close()
	waitFor(t, time.Second, "client removed", func() bool { return h.clients() == 0 })
	h.publish([]byte("x"))
	if d := counterValue(h.clientsDropped); d != 0 {
		t.Errorf("clients dropped: %v, want 0", d)
	}
}

func TestCheckOrigin(t *testing.T) {
	for _, tc := range []struct {
		host, origin string
		ok           bool
	}{
		{"results.example", "", true},
		{"results.example", "https://results.example", true},
		{"results.example:8081", "http://results.example:8081", true},
		{"Results.Example", "https://results.example", true},
		{"results.example", "https://evil.example", false},
		{"results.example:8081", "http://results.example", false},
		{"results.example", "null", false},
		{"results.example", "://", false},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if err := checkOrigin(r); (err == nil) != tc.ok {
			t.Errorf("Host %q Origin %q: got %v, want ok %v", tc.host, tc.origin, err, tc.ok)
		}
	}
}

// TestServeWebSocketHandshake: the handler's answers to handshakes, good and bad.
func TestServeWebSocketHandshake(t *testing.T) {
	s := &Service{hub: newTestHub(t, time.Second, time.Hour)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "DENY") // as the security middleware does
		s.serveWebSocket(w, r)
	}))
	defer srv.Close()
	handshake := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
		body   string
	}{
		{"same origin", map[string]string{"Origin": srv.URL}, 101, ""},
		{"no origin", nil, 101, ""},
		{"cross origin", map[string]string{"Origin": "https://evil.example"}, 403, "not allowed"},
		{"not an upgrade", map[string]string{"Upgrade": "h2c"}, 400, "Upgrade"},
		{"old version", map[string]string{"Sec-WebSocket-Version": "8"}, 426, "Sec-Websocket-Version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL, nil)
			for k, v := range handshake {
				req.Header.Set(k, v)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
				t.Errorf("the middleware's header on the answer: %q, want DENY", got)
			}
			if tc.want == 101 {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if !strings.Contains(strings.ToLower(string(b)), strings.ToLower(tc.body)) {
				t.Errorf("body %q does not say why (%q)", b, tc.body)
			}
		})
	}
	waitFor(t, time.Second, "handshake clients gone", func() bool { return s.hub.clients() == 0 })
}

// TestFrameBeforeHandshakeAnswer: a client that sends a frame before the handshake
// answer breaks the protocol and is closed, so net/http's buffers never need keeping.
func TestFrameBeforeHandshakeAnswer(t *testing.T) {
	s := &Service{hub: newTestHub(t, time.Second, time.Hour)}
	srv := httptest.NewServer(http.HandlerFunc(s.serveWebSocket))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", srv.Listener.Addr())
	_ = ws.WriteFrame(&req, ws.MaskFrame(ws.NewTextFrame([]byte("too early"))))
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c) // the 101, then the end
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection left open")
	}
	if n := s.hub.clients(); n != 0 {
		t.Errorf("clients: %d, want 0", n)
	}
}
