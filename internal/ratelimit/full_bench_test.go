package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAllowNewClientWhenFull measures a new client's vote when the limiter is full of
// clients that are not idle: the case of a flood from many addresses.
func BenchmarkAllowNewClientWhenFull(b *testing.B) {
	now := time.Unix(1000, 0)
	l := New(1, 2)
	l.now = func() time.Time { return now }
	for i := range MaxClients {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	i := 0
	for b.Loop() {
		i++
		l.Allow(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
}
