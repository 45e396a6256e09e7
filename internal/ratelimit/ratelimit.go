// Package ratelimit limits how often one client may vote: a token bucket per client address.
// It is meant for public demos, where one script should not be able to flood the poll from
// one machine; it does not stop a distributed flood, and it knows nothing about votes.
//
// The client's address is the connection's peer, unless the peer is a proxy the operator
// trusts: then it is the nearest address in X-Forwarded-For that is not a trusted proxy. A
// client can write anything into X-Forwarded-For, so the header is ignored from anyone else.
package ratelimit

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Proxies is the set of proxies whose X-Forwarded-For is believed. The zero value trusts none.
type Proxies struct {
	nets []netip.Prefix
}

// ParseProxies parses a comma-separated list of addresses and CIDR prefixes, e.g.
// "10.0.0.0/8,192.168.1.10". The empty string trusts no proxy.
func ParseProxies(s string) (*Proxies, error) {
	p := &Proxies{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR prefix", part)
			}
			part = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String()
		}
		pr, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR prefix", part)
		}
		p.nets = append(p.nets, pr.Masked())
	}
	return p, nil
}

// String lists the trusted proxies as ParseProxies reads them; a nil or empty set is "".
func (p *Proxies) String() string {
	if p == nil {
		return ""
	}
	parts := make([]string, len(p.nets))
	for i, n := range p.nets {
		parts[i] = n.String()
	}
	return strings.Join(parts, ",")
}

// Trusted reports whether a is one of the trusted proxies.
func (p *Proxies) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of the client that made r. When the peer is a trusted proxy,
// X-Forwarded-For is read from the right (each proxy appends the address it saw) and the
// first address that is not a trusted proxy is the client: everything left of it may have
// been written by the client itself.
func (p *Proxies) ClientIP(r *http.Request) netip.Addr {
	peer := remoteAddr(r)
	if !peer.IsValid() || !p.Trusted(peer) {
		return peer
	}
	client := peer
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, ok := parseHop(parts[j])
			if !ok {
				return client // garbage: stop at the last address we could trust
			}
			client = a
			if !p.Trusted(client) {
				return client
			}
		}
	}
	return client
}

// parseHop reads one address of X-Forwarded-For in each form proxies write: a bare IPv4 or
// IPv6 address, an IPv4 address with the client's port (203.0.113.5:51234), an IPv6 address
// in brackets with or without a port ([2001:db8::1]:443, as Azure's gateways and some load
// balancers send). The address comes back unmapped and without a zone, so that one client
// has one form, and one bucket.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		switch {
		case perr == nil:
			a = ap.Addr()
		case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil || !a.Is6() {
				return netip.Addr{}, false
			}
		default:
			return netip.Addr{}, false
		}
	}
	return a.Unmap().WithZone(""), true
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// key is what one client's bucket is keyed by: its IPv4 address, or its IPv6 /64, since one
// IPv6 host commonly has a whole /64 to pick addresses from.
func key(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// MaxClients bounds the clients tracked at once, so that a flood from many addresses cannot
// grow memory without bound (about 100 bytes each). Past it, idle clients are forgotten; if
// none is idle the new client is let through untracked: the limiter fails open, since it is a
// courtesy for demos and must never turn away voters because it is full.
const MaxClients = 100_000

// sweepEvery is how often, at most, a full limiter looks for idle clients to forget. A look
// goes through every client under the lock (milliseconds at MaxClients), so doing it for
// each new client of a flood would hold up every vote; in between, new clients go
// untracked.
const sweepEvery = time.Second

// Limiter is a token bucket per client: Burst votes at once, then Rate per second.
type Limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	clients   map[netip.Addr]*bucket
	lastSweep time.Time // when forgetIdle last ran
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter allowing each client burst requests at once and rate per second
// after that.
func New(rate float64, burst int) *Limiter {
	return &Limiter{rate: rate, burst: float64(max(burst, 1)), now: time.Now, clients: map[netip.Addr]*bucket{}}
}

// Allow takes a token from the client's bucket. When there is none it returns false and how
// long until there is one.
func (l *Limiter) Allow(client netip.Addr) (bool, time.Duration) {
	k := key(client)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[k]
	if !ok {
		if len(l.clients) >= MaxClients {
			if now.Sub(l.lastSweep) >= sweepEvery {
				l.forgetIdle(now)
				l.lastSweep = now
			}
			if len(l.clients) >= MaxClients {
				return true, 0
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.clients[k] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// forgetIdle drops the buckets that have refilled: forgetting them changes nothing.
func (l *Limiter) forgetIdle(now time.Time) {
	for k, b := range l.clients {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.clients, k)
		}
	}
}

// Middleware limits the requests for which limited(r) is true (the vote service limits its
// POSTs, so that pages and assets are never refused). A refused request gets 429 with
// Retry-After, and onRefuse is called (to count it).
func Middleware(l *Limiter, p *Proxies, limited func(*http.Request) bool, onRefuse func(), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if limited(r) {
			if ok, wait := l.Allow(p.ClientIP(r)); !ok {
				onRefuse()
				secs := int(math.Ceil(wait.Seconds()))
				w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
				http.Error(w, "too many votes from your address: please wait a moment", http.StatusTooManyRequests)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
