package result

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkFanOut measures one broadcast to n WebSocket clients over loopback TCP, per client,
// next to the physical limit of the same work on this machine: the same frame written with
// plain Write calls to the same sockets by one goroutine per CPU, with the same readers at the
// other end. Both report ns/client, the wall time of one broadcast divided by the clients, from
// the publish until the last client has read the frame; scripts/bench prints the two side by
// side, and their ratio is what the hub adds to the kernel's own cost. Both ends live in this
// one process, two descriptors a client: the largest step is 9,000 clients, which fits under
// an open-files limit of 20,000 (this machine's hard limit; the soft one is raised to it).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000, 9000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			servers, clients := loopbackPairs(b, n)
			payload := []byte(`{"options":[{"id":"a","label":"Cats","count":123456,"percent":15.87},{"id":"b","label":"Dogs","count":654321,"percent":84.13}],"total":777777,"instance":"voting-result-7d9f8b6c5d-x2x4q"}`)
			frame := ws.MustCompileFrame(ws.NewTextFrame(payload))
			var left atomic.Int64
			round := make(chan struct{}, 1)
			readRounds(clients, len(frame), &left, round)
			// Plain writes first: then the hub takes the same connections over.
			b.Run("write", func(b *testing.B) {
				procs := runtime.GOMAXPROCS(0)
				for b.Loop() {
					left.Store(int64(n))
					var wg sync.WaitGroup
					for p := range procs {
						wg.Go(func() {
							for i := p; i < n; i += procs {
								if _, err := servers[i].Write(frame); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					<-round
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/client")
			})
			b.Run("hub", func(b *testing.B) {
				counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "n"})
				h := newHub(counter, counter, slog.New(slog.DiscardHandler), 0, 0)
				h.pingInterval = time.Hour // no ping within the measurement
				for _, s := range servers {
					h.admit(netip.Addr{})
					h.add(s, netip.Addr{})
				}
				defer h.shutdown()
				for b.Loop() {
					left.Store(int64(n))
					h.publish(payload)
					<-round
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/client")
			})
		})
	}
}

// readRounds starts a reader on each conn, the browser's end: it reads frames of size bytes,
// and the reader that takes left to 0 signals round.
func readRounds(conns []net.Conn, size int, left *atomic.Int64, round chan<- struct{}) {
	for _, c := range conns {
		go func() {
			buf := make([]byte, size)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if left.Add(-1) == 0 {
					round <- struct{}{}
				}
			}
		}()
	}
}

// loopbackPairs returns n connected TCP pairs on 127.0.0.1: the server ends and the client
// ends, closed when the benchmark ends.
func loopbackPairs(b *testing.B, n int) (servers, clients []net.Conn) {
	b.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if need := uint64(2*n + 1024); lim.Cur < need {
		lim.Cur, lim.Max = need, max(lim.Max, need)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatalf("%d clients need %d open files (ulimit -n), and raising the limit failed: %v", n, need, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	b.Cleanup(func() {
		for _, c := range append(servers, clients...) {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatalf("dial (the open-files limit?): %v", err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		clients, servers = append(clients, c), append(servers, s)
	}
	return servers, clients
}
