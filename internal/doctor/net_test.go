package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		err  error
		want Cause
	}{
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, CauseDNS},
		{fmt.Errorf("wrapped: %w", &net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}), CauseDNS},
		{op(syscall.ECONNREFUSED), CauseRefused},
		{op(syscall.EHOSTUNREACH), CauseUnreachable},
		{op(syscall.ENETUNREACH), CauseUnreachable},
		{context.DeadlineExceeded, CauseTimeout},
		{op(syscall.ETIMEDOUT), CauseTimeout},
		{op(syscall.ECONNRESET), CauseClosed},
		{io.EOF, CauseClosed},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, CauseTLS},
		{errors.New("something else"), CauseOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// closedPort returns a loopback address nothing listens on: connections to it are refused.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentServer accepts connections and never answers; hangUp closes each at once instead.
func silentServer(t *testing.T, hangUp bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if hangUp {
				c.Close()
				continue
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().String()
}

// TestNetworkSentences: each network failure of a hop gets its cause and a sentence that
// names the address and the flag to fix.
func TestNetworkSentences(t *testing.T) {
	refused := closedPort(t)
	silent := silentServer(t, false)
	hangUp := silentServer(t, true)
	tests := []struct {
		name  string
		url   string
		cause Cause
		want  []string
	}{
		{"dns", "http://vote.doctor.invalid:8080", CauseDNS, []string{"vote.doctor.invalid does not resolve (DNS: no such host)", "--vote-url"}},
		{"refused", "http://" + refused, CauseRefused, []string{"the connection to " + refused + " was refused", "nothing listens", "start the vote service"}},
		{"no answer", "http://" + silent, CauseNoAnswer, []string{"took the connection but answered nothing within 300ms"}},
		{"hang up", "http://" + hangUp, CauseClosed, []string{"closed the connection without answering"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := checkVote(context.Background(), Config{VoteURL: tt.url, Timeout: 300 * time.Millisecond})
			t.Logf("%s", h.Message)
			if h.Status != Broken || h.Cause != tt.cause {
				t.Fatalf("got %s %q (%s), want broken with cause %q", h.Status, h.Cause, h.Message, tt.cause)
			}
			for _, w := range tt.want {
				if !strings.Contains(h.Message, w) {
					t.Errorf("sentence %q lacks %q", h.Message, w)
				}
			}
		})
	}
}

// TestInvalidNamesAreNotLookedUp: a name under .invalid fails at once, without a DNS query
// (RFC 6761), whichever client asks.
func TestInvalidNamesAreNotLookedUp(t *testing.T) {
	tr := newTrace(time.Second)
	for _, host := range []string{"x.invalid", "A.B.INVALID.", "invalid"} {
		_, err := tr.lookup(context.Background(), host)
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("lookup %s: %v, want a not-found DNS error", host, err)
		}
	}
	if _, err := tr.dial(context.Background(), "tcp", "postgres.invalid:5432"); Classify(err) != CauseDNS {
		t.Errorf("dial postgres.invalid: %v, want a DNS error", err)
	}
	if err := invalidName("invalid.example.com"); err != nil {
		t.Errorf("invalid.example.com is a real name, got %v", err)
	}
}
