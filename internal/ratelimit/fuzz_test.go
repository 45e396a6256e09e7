package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientIP feeds any X-Forwarded-For and any peer to ClientIP. It must not panic; an
// untrusted peer is the client whatever the header says; otherwise the client is the peer or
// an address written in the header, unmapped and without a zone; and every form of an
// address that proxies write (bare, with a port, in brackets) names that address.
func FuzzClientIP(f *testing.F) {
	for _, s := range []struct{ peer, xff string }{
		{"10.1.2.3:80", "203.0.113.5:51234"},
		{"10.1.2.3:80", "[2001:db8::1]:443"},
		{"10.1.2.3:80", "[2001:db8::1]"},
		{"10.1.2.3:80", "1.2.3.4, 198.51.100.9:4242, 10.0.0.1:80"},
		{"10.1.2.3:80", "fe80::1%eth0, [::ffff:203.0.113.5]:80"},
		{"10.1.2.3:80", "unknown, _hidden, , [1.2.3.4]:5, :80, [::1]:99999"},
		{"[fd00::1%eth0]:80", "2001:db8::7"},
		{"203.0.113.7:5555", "1.2.3.4"},
		{"not an address", "1.2.3.4"},
	} {
		f.Add(s.peer, s.xff)
	}
	proxies, err := ParseProxies("10.0.0.0/8, fd00::/8, 127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", xff)
		got := proxies.ClientIP(r)
		p := remoteAddr(r)
		if !p.IsValid() || !proxies.Trusted(p) {
			if got != p {
				t.Fatalf("untrusted peer %q with X-Forwarded-For %q: client %v, want the peer %v", peer, xff, got, p)
			}
			return
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("client %v: want no zone and no IPv4-mapped form", got)
		}
		if got != p {
			found := false
			for _, hop := range strings.Split(xff, ",") {
				if a, ok := parseHop(hop); ok && a == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("client %v is neither the peer %v nor an address of X-Forwarded-For %q", got, p, xff)
			}
		}
		// Every hop that parses is read back in the forms proxies write it.
		for _, hop := range strings.Split(xff, ",") {
			a, ok := parseHop(hop)
			if !ok {
				continue
			}
			forms := []string{a.String(), netip.AddrPortFrom(a, 8080).String()}
			if a.Is6() {
				forms = append(forms, "["+a.String()+"]")
			}
			for _, form := range forms {
				if b, ok := parseHop(" " + form + " "); !ok || b != a {
					t.Fatalf("hop %q parsed as %v; its form %q as %v, %v", hop, a, form, b, ok)
				}
			}
		}
	})
}
