package faulttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/proctest"
)

// castOne casts one vote and returns the status and how long it took.
func castOne(t *testing.T, url string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/", strings.NewReader("vote=a"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("a normal vote failed: %v", err)
		return 0, time.Since(start)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// requireServed fails unless a normal vote gets a 200 within a second.
func requireServed(t *testing.T, url, while string) time.Duration {
	t.Helper()
	code, d := castOne(t, url)
	if code != http.StatusOK || d > time.Second {
		t.Errorf("%s: a normal vote got %d in %v, want 200 within 1s", while, code, d)
	}
	return d
}

// rss returns the resident memory of a process in KiB, from /proc.
func rss(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var n int
			fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), &n)
			return n
		}
	}
	return 0
}

// TestAbusiveClients sends what a public service gets from broken or hostile clients:
// oversized bodies and headers, slowloris connections, thousands of idle WebSockets, a
// WebSocket that never reads. Each is refused or bounded, the services stay up, and other
// clients are served throughout.
func TestAbusiveClients(t *testing.T) {
	sys := newSystem(t, "everysec")
	// The largest poll there may be: 12 options with 64-character labels make each snapshot
	// about 1.5 KiB, so that a client that never reads fills its socket buffers quickly.
	var opts []string
	for i := range 12 {
		opts = append(opts, fmt.Sprintf("%c=%s", 'a'+i, strings.Repeat(string(rune('A'+i)), 64)))
	}
	poll := "--options=" + strings.Join(opts, ",")
	v, voteURL := sys.vote(poll)
	sys.worker("--batch-size=1") // a commit, hence a snapshot, per vote
	// The 2,000 idle WebSockets below all come from loopback: no limit per client address.
	res, resultURL := sys.result(poll, "--max-websockets-per-client=0")

	t.Run("oversized", func(t *testing.T) {
		big := bytes.Repeat([]byte("x"), 10<<20)
		for _, tc := range []struct{ path, ctype, prefix, suffix string }{
			{"/", "application/x-www-form-urlencoded", "vote=a&pad=", ""},
			{"/api/vote", "application/json", `{"vote":"`, `"}`},
		} {
			for _, chunked := range []bool{false, true} {
				var body io.Reader = bytes.NewReader([]byte(tc.prefix + string(big) + tc.suffix))
				if chunked { // no length: chunked
					body = io.MultiReader(strings.NewReader(tc.prefix), bytes.NewReader(big), strings.NewReader(tc.suffix))
				}
				start := time.Now()
				resp, err := http.Post(voteURL+tc.path, tc.ctype, body)
				d := time.Since(start)
				if err != nil {
					// The server may close the connection after its 413 while the client still
					// writes; the answer then is the reset, which refuses the body just as well.
					t.Logf("%s (chunked %v): 10 MiB body: %v after %v", tc.path, chunked, err, d)
				} else {
					resp.Body.Close()
					if resp.StatusCode != http.StatusRequestEntityTooLarge {
						t.Errorf("%s (chunked %v): 10 MiB body: got %s, want 413", tc.path, chunked, resp.Status)
					}
					t.Logf("%s (chunked %v): 10 MiB body: %s in %v", tc.path, chunked, resp.Status, d.Round(time.Millisecond))
				}
			}
		}
		req, _ := http.NewRequest(http.MethodGet, voteURL+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("y", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("64 KiB header: got %s, want 431", resp.Status)
		}
		requireServed(t, voteURL, "after oversized requests")
		// Recorded, not queued: the worker empties the stream within milliseconds, so its
		// length would not show a vote that got through.
		sys.drain(time.Minute)
		if n := sys.storeTotal(); n != 1 {
			t.Errorf("%d votes recorded; only the normal vote should be", n)
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		// 500 connections that send a request line, then one header byte a second.
		const n = 500
		var closed atomic.Int64
		var wg sync.WaitGroup
		opened := time.Now()
		stop := make(chan struct{})
		for range n {
			c, err := net.Dial("tcp", strings.TrimPrefix(voteURL, "http://"))
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			t.Cleanup(func() { c.Close() })
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			wg.Go(func() {
				// The server closes the connection when ReadHeaderTimeout passes.
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, err := c.Read(make([]byte, 1))
				if ne, ok := err.(net.Error); err != nil && !(ok && ne.Timeout()) {
					closed.Add(1)
				}
			})
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
						if _, err := c.Write([]byte("a")); err != nil {
							return
						}
					}
				}
			}()
		}
		var worst time.Duration
		for range 10 {
			worst = max(worst, requireServed(t, voteURL, "with 500 slowloris connections open"))
			time.Sleep(100 * time.Millisecond)
		}
		wg.Wait()
		close(stop)
		took := time.Since(opened)
		t.Logf("slowloris: %d connections dribbling headers; normal votes served meanwhile in at most %v; all %d cut off by the server %v after opening",
			n, worst.Round(time.Millisecond), closed.Load(), took.Round(time.Millisecond))
		if took > 15*time.Second || closed.Load() != n {
			t.Errorf("%d of %d slow-header connections cut off, after %v; want all, by the 5s header timeout", closed.Load(), n, took)
		}
	})

	t.Run("idle websockets", func(t *testing.T) {
		const n = 2000
		before := rss(res.pid())
		start := time.Now()
		var (
			mu    sync.Mutex
			conns []*proctest.WebSocket
			got   = make([]atomic.Int64, n) // last total each client saw
		)
		sem := make(chan struct{}, 50)
		var wg sync.WaitGroup
		var dialErrs atomic.Int64
		for i := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c, err := proctest.DialWebSocket(ctx, resultURL+"/ws", nil)
				if err != nil {
					dialErrs.Add(1)
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go func() {
					for {
						b, err := c.Read(0)
						if err != nil {
							return
						}
						var r struct{ Total int64 }
						if json := bytes.Index(b, []byte(`"total":`)); json >= 0 {
							fmt.Sscan(string(b[json+len(`"total":`):]), &r.Total)
						}
						got[i].Store(r.Total)
					}
				}()
			})
		}
		wg.Wait()
		t.Cleanup(func() {
			for _, c := range conns {
				c.CloseNow()
			}
		})
		if dialErrs.Load() > 0 {
			t.Fatalf("%d of %d WebSocket dials failed", dialErrs.Load(), n)
		}
		opened := time.Since(start)
		during := rss(res.pid())
		d := requireServed(t, voteURL, "with 2000 idle WebSockets")
		resp, err := http.Get(resultURL + "/api/results")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/results with 2000 WebSockets open: %v %v", resp, err)
		}
		resp.Body.Close()
		// One more vote: every one of the 2000 gets the new total.
		want := sys.storeTotal() + 1
		requireServed(t, voteURL, "")
		deadline := time.Now().Add(30 * time.Second)
		for i := range n {
			for got[i].Load() < want {
				if time.Now().After(deadline) {
					t.Fatalf("client %d: total %d, want %d", i, got[i].Load(), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		t.Logf("idle websockets: %d opened in %v; result RSS %d KiB before, %d KiB with them open; a vote meanwhile took %v; all got the next total within %v",
			n, opened.Round(time.Millisecond), before, during, d.Round(time.Millisecond), time.Since(deadline.Add(-30*time.Second)).Round(time.Millisecond))
	})

	t.Run("websocket that never reads", func(t *testing.T) {
		c := rawWebSocket(t, strings.TrimPrefix(resultURL, "http://"))
		defer c.Close()
		reader := dialWS(t, resultURL)
		// Many snapshots: the worker commits each vote alone, and each commit makes one.
		// 8,000 of about 1.5 KiB are 12 MiB, three times what Linux lets a socket buffer
		// (net.ipv4.tcp_wmem's 4 MiB maximum by default).
		l := startLoad(t, voteURL, 8000, func(c *loadgen.Config) { c.Concurrency = 4 })
		l.wait()
		sys.drain(time.Minute)
		want := sys.storeTotal()
		deadline := time.Now().Add(20 * time.Second)
		for {
			r, _, err := reader.state()
			if err != nil {
				t.Fatalf("reading client: %v", err)
			}
			if r.Total == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reading client: total %d, want %d, with a non-reading client connected", r.Total, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !res.ready() || !v.ready() {
			t.Errorf("a service is not ready after the non-reading client")
		}
		// Its socket buffers full, the write to it times out after 5 s and it is dropped.
		start := time.Now()
		dropped := metricLine(t, res.admin, "voting_websocket_clients_dropped_total")
		for dropped == "voting_websocket_clients_dropped_total 0" && time.Since(start) < 15*time.Second {
			time.Sleep(100 * time.Millisecond)
			dropped = metricLine(t, res.admin, "voting_websocket_clients_dropped_total")
		}
		_, msgs, _ := reader.state()
		if dropped == "voting_websocket_clients_dropped_total 0" {
			t.Errorf("the client that never reads was not dropped within 15s of the load")
		}
		t.Logf("non-reading WebSocket: the reading client got %d snapshots and the final total %d; result RSS %d KiB; %s (%v after the load)",
			msgs, want, rss(res.pid()), dropped, time.Since(start).Round(time.Millisecond))
	})

	for _, s := range []*service{v, res} {
		if code := s.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0", s.name, code)
		}
	}
}

// storeTotal counts the votes table.
func (sys *system) storeTotal() int64 {
	var n int64
	fmt.Sscan(sys.pg.query("SELECT count(*) FROM votes")[0][0], &n)
	return n
}

// rawWebSocket opens /ws with a hand-written handshake and a small receive buffer, and
// never reads from it.
func rawWebSocket(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		})
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return c
}

// metricLine returns the line of name in the service's /metrics. The test fails when there
// is none: a renamed or labelled metric must not read as a value that never changed.
func metricLine(t *testing.T, admin, name string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	t.Fatalf("%s/metrics has no line %s", admin, name)
	return ""
}
