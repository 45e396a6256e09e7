package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestClientIP(t *testing.T) {
	proxies, err := ParseProxies("10.0.0.0/8, 192.168.1.10 ,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy", "203.0.113.7:5555", nil, "203.0.113.7"},
		{"forged header from a client", "203.0.113.7:5555", []string{"1.2.3.4"}, "203.0.113.7"},
		{"one trusted proxy", "10.1.2.3:80", []string{"198.51.100.9"}, "198.51.100.9"},
		{"client-written prefix ignored", "10.1.2.3:80", []string{"1.2.3.4, 198.51.100.9"}, "198.51.100.9"},
		{"chain of trusted proxies", "10.1.2.3:80", []string{"198.51.100.9, 192.168.1.10", "10.9.9.9"}, "198.51.100.9"},
		{"single trusted address", "192.168.1.10:80", []string{"198.51.100.9"}, "198.51.100.9"},
		{"untrusted neighbour of a trusted address", "192.168.1.11:80", []string{"198.51.100.9"}, "192.168.1.11"},
		{"trusted proxy, no header", "10.1.2.3:80", nil, "10.1.2.3"},
		{"garbage in the header", "10.1.2.3:80", []string{"198.51.100.9, not-an-ip"}, "10.1.2.3"},
		{"all hops trusted", "10.1.2.3:80", []string{"10.0.0.1"}, "10.0.0.1"},
		{"IPv6 proxy", "[fd00::1]:80", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:80", []string{"198.51.100.9"}, "198.51.100.9"},
		// The forms real proxies send besides the bare address: each names the client,
		// never the proxy.
		{"IPv4 with port", "10.1.2.3:80", []string{"203.0.113.5:51234"}, "203.0.113.5"},
		{"IPv6 with port", "10.1.2.3:80", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv6 in brackets", "10.1.2.3:80", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 with zone", "10.1.2.3:80", []string{"fe80::1%eth0"}, "fe80::1"},
		{"IPv4-mapped with port", "10.1.2.3:80", []string{"[::ffff:203.0.113.5]:80"}, "203.0.113.5"},
		{"ports on every hop", "10.1.2.3:80", []string{"1.2.3.4:1, 198.51.100.9:4242, 10.0.0.1:80"}, "198.51.100.9"},
		{"trusted IPv6 proxy hop with port", "10.1.2.3:80", []string{"198.51.100.9, [fd00::5]:8443"}, "198.51.100.9"},
		{"brackets around IPv4", "10.1.2.3:80", []string{"[203.0.113.5]"}, "10.1.2.3"},
		{"port alone", "10.1.2.3:80", []string{":51234"}, "10.1.2.3"},
		{"empty hop", "10.1.2.3:80", []string{"198.51.100.9, "}, "10.1.2.3"},
		{"zoned peer", "[fd00::1%eth0]:80", []string{"2001:db8::7"}, "2001:db8::7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.RemoteAddr = tt.peer
			for _, h := range tt.xff {
				r.Header.Add("X-Forwarded-For", h)
			}
			if got := proxies.ClientIP(r); got.String() != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	var none Proxies
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.RemoteAddr = "10.1.2.3:80"
	r.Header.Set("X-Forwarded-For", "198.51.100.9")
	if got := none.ClientIP(r); got.String() != "10.1.2.3" {
		t.Errorf("no trusted proxies: got %s, want the peer", got)
	}
}

func TestParseProxiesRefusesGarbage(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/8/8"} {
		if _, err := ParseProxies(s); err == nil {
			t.Errorf("ParseProxies(%q): no error", s)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(2, 5)
	l.now = func() time.Time { return now }
	a := netip.MustParseAddr("203.0.113.7")
	b := netip.MustParseAddr("203.0.113.8")
	for i := range 5 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.Allow(a)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: got %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.Allow(b); !ok {
		t.Fatal("another client refused")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("refilled token refused")
	}
	if ok, _ := l.Allow(a); ok {
		t.Fatal("second token after 500ms at 2/s allowed")
	}
	// One IPv6 host picks addresses from its /64: one bucket.
	l6 := New(1, 1)
	l6.now = l.now
	if ok, _ := l6.Allow(netip.MustParseAddr("2001:db8::1")); !ok {
		t.Fatal("first IPv6 vote refused")
	}
	if ok, _ := l6.Allow(netip.MustParseAddr("2001:db8::ffff:2")); ok {
		t.Fatal("another address of the same /64 had its own bucket")
	}
	if ok, _ := l6.Allow(netip.MustParseAddr("2001:db8:0:1::1")); !ok {
		t.Fatal("another /64 refused")
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(1, 1)
	l.now = func() time.Time { return now }
	for i := range MaxClients + 10 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("new client %d refused", i)
		}
	}
	if n := len(l.clients); n > MaxClients {
		t.Fatalf("%d clients tracked, want at most %d", n, MaxClients)
	}
	now = now.Add(2 * time.Second) // all idle and refilled: the next new client evicts them
	l.Allow(netip.MustParseAddr("192.0.2.1"))
	if n := len(l.clients); n != 1 {
		t.Fatalf("%d clients tracked after all went idle, want 1", n)
	}
}

// TestFullLimiterSweepsAtMostOncePerSecond: looking for idle clients goes through them all,
// so a full limiter does it once per sweepEvery, not for every new client of a flood.
func TestFullLimiterSweepsAtMostOncePerSecond(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(10, 1) // a client is idle again 100 ms after its vote
	l.now = func() time.Time { return now }
	for i := range MaxClients + 1 { // the last one finds the limiter full: a sweep, nothing idle
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	now = now.Add(sweepEvery / 2) // all idle now, but the last sweep was just now
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Fatal("new client refused by a full limiter")
	}
	if n := len(l.clients); n != MaxClients {
		t.Fatalf("%d clients tracked half a sweep interval after a sweep, want still %d", n, MaxClients)
	}
	now = now.Add(sweepEvery / 2)
	l.Allow(netip.MustParseAddr("192.0.2.2"))
	if n := len(l.clients); n != 1 {
		t.Fatalf("%d clients tracked a sweep interval later, want 1 (the idle ones forgotten)", n)
	}
}

func TestMiddleware(t *testing.T) {
	l := New(1, 2)
	var refused int
	h := Middleware(l, &Proxies{}, func(r *http.Request) bool { return r.Method == http.MethodPost }, func() { refused++ },
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	codes := []int{}
	for range 3 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil))
		codes = append(codes, w.Code)
		if w.Code == http.StatusTooManyRequests && w.Header().Get("Retry-After") != "1" {
			t.Errorf("429 without Retry-After: 1: %q", w.Header().Get("Retry-After"))
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 || refused != 1 {
		t.Fatalf("got %v (refused %d), want 200 200 429 (1)", codes, refused)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != 200 {
		t.Fatalf("GET past the limit: got %d, want 200 (pages are never limited)", w.Code)
	}
}

// TestClientsWithPortsBehindAProxy: clients that a trusted proxy names with their port
// (203.0.113.5:51234, [2001:db8::1]:443) each get their own bucket; they once all fell into
// the proxy's.
func TestClientsWithPortsBehindAProxy(t *testing.T) {
	proxies, err := ParseProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	h := Middleware(New(1, 1), proxies, func(*http.Request) bool { return true }, func() {},
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	for _, client := range []string{"203.0.113.5:51234", "203.0.113.6:51234", "[2001:db8::1]:443", "[2001:db8:1::1]:443", "198.51.100.9"} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = "10.1.2.3:80"
		r.Header.Set("X-Forwarded-For", client)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Errorf("first vote of %s behind the proxy: %d, want 200 (its own bucket)", client, w.Code)
		}
	}
}
