package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Classify names the network failure behind err: CauseDNS, CauseRefused, CauseUnreachable,
// CauseTimeout, CauseClosed, CauseTLS, or CauseOther for anything else. It is the one place
// where a network error is told apart, for every hop. It cannot tell a timeout while
// connecting from one while waiting for an answer: a trace (the hop's dialer) can, and
// turns the second into CauseNoAnswer.
func Classify(err error) Cause {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &dnsErr):
		return CauseDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return CauseUnreachable
	case errors.As(err, &certErr), errors.As(err, &unknownAuthority), errors.As(err, &hostnameErr),
		errors.As(err, &recordErr), strings.Contains(err.Error(), "tls: "):
		return CauseTLS
	case isTimeout(err):
		return CauseTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		// net/http's own words for a connection closed before any answer; its error
		// value is not exported.
		strings.Contains(err.Error(), "server closed idle connection"):
		return CauseClosed
	}
	return CauseOther
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// trace dials for one hop and remembers what its dials did. The client libraries rewrap
// network errors in their own ways (pgx turns a dial that timed out into "timeout: context
// deadline exceeded", go-redis and net/http add their own words), so what the dial itself
// returned, and whether any dial connected at all, is what tells "the packets are dropped"
// from "the server took the connection and then said nothing". Give trace.dial to the
// client as its dial function (and trace.lookup to pgx, which resolves names itself).
type trace struct {
	timeout time.Duration

	mu        sync.Mutex
	connected bool   // some dial connected
	dialing   int    // dials under way: net/http gives up on a request before its dial returns
	addr      string // the address of the last dial or lookup that failed or is under way
	err       error  // the error of the last one that failed
}

func newTrace(timeout time.Duration) *trace { return &trace{timeout: timeout} }

// dial connects like net.Dialer, within the hop's timeout, and records the outcome.
func (t *trace) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	if err := invalidName(host); err != nil {
		t.fail(addr, err)
		return nil, err
	}
	t.mu.Lock()
	t.dialing++
	t.addr = addr
	t.mu.Unlock()
	d := net.Dialer{Timeout: t.timeout}
	c, err := d.DialContext(ctx, network, addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dialing--
	if err != nil {
		t.addr, t.err = addr, err
		return nil, err
	}
	t.connected = true
	return c, nil
}

// lookup resolves host as net.DefaultResolver does, and records a failure.
func (t *trace) lookup(ctx context.Context, host string) ([]string, error) {
	if err := invalidName(host); err != nil {
		t.fail(host, err)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		t.fail(host, err)
	}
	return addrs, err
}

func (t *trace) fail(addr string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addr, t.err = addr, err
}

// invalidName answers "no such host" for names under .invalid without asking a DNS server.
// RFC 6761 (section 6.4) asks resolvers to do so: such a name can never exist, so the query
// could only leak what someone mistyped. Go's resolver and glibc's send it anyway.
func invalidName(host string) error {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "invalid" || strings.HasSuffix(h, ".invalid") {
		return &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return nil
}

// service describes the far end of a hop for the sentences: what it is, the address that
// was reached, and the flag that names it.
type service struct {
	what string // "the vote service", "Redis"
	addr string // host:port
	flag string // "--vote-url"
}

// netProblem explains err as a network failure of the hop, or returns nil when it is not
// one (the server answered, with an error the hop explains itself).
func (t *trace) netProblem(s service, err error) *problem {
	t.mu.Lock()
	connected, dialing, dialAddr, dialErr := t.connected, t.dialing, t.addr, t.err
	t.mu.Unlock()
	if !connected && dialing > 0 && err != nil {
		// The request gave up while its connection was still being made: the connect
		// itself is what did not finish in time.
		dialErr = err
	}
	if !connected && dialErr != nil {
		if dialAddr != "" && Classify(dialErr) != CauseDNS {
			s.addr = dialAddr
		}
		return connectProblem(s, dialErr, t.timeout)
	}
	if err == nil {
		return nil
	}
	switch c := Classify(err); c {
	case CauseTimeout:
		return &problem{CauseNoAnswer, fmt.Sprintf("%s (%s) took the connection but answered nothing within %s: it is overloaded or stuck, or that port serves something else; look at its load and logs, and at the port in %s",
			s.what, s.addr, t.timeout, s.flag)}
	case CauseClosed:
		return &problem{CauseClosed, fmt.Sprintf("%s (%s) closed the connection without answering (%v): it may want TLS, or the port serves something else; check the scheme and port in %s",
			s.what, s.addr, rootCause(err), s.flag)}
	case CauseTLS:
		return tlsProblem(s, err)
	case CauseDNS, CauseRefused, CauseUnreachable:
		return connectProblem(s, err, t.timeout)
	}
	return nil
}

// connectProblem explains a failure to connect at all.
func connectProblem(s service, err error, timeout time.Duration) *problem {
	switch c := Classify(err); c {
	case CauseDNS:
		var dnsErr *net.DNSError
		errors.As(err, &dnsErr)
		if dnsErr.IsNotFound {
			return &problem{c, fmt.Sprintf("the host name %s does not resolve (DNS: no such host): the name in %s is mistyped, or only another network knows it (a Kubernetes Service name resolves inside the cluster only, and from another namespace only as <service>.<namespace>); fix the URL, or run doctor where the name resolves",
				dnsErr.Name, s.flag)}
		}
		return &problem{c, fmt.Sprintf("the host name %s could not be resolved (DNS: %s): the DNS server did not answer; check this machine's resolver (/etc/resolv.conf) and, in Kubernetes, that a NetworkPolicy lets this pod reach DNS on port 53",
			dnsErr.Name, dnsErr.Err)}
	case CauseRefused:
		return &problem{c, fmt.Sprintf("the connection to %s was refused: nothing listens on that port; start %s, or fix the host or port in %s",
			s.addr, s.what, s.flag)}
	case CauseTimeout:
		return &problem{c, fmt.Sprintf("connecting to %s timed out after %s: a firewall or a NetworkPolicy dropping the packets? (or the host is down); allow the traffic from here to that port, or fix the address in %s",
			s.addr, timeout, s.flag)}
	case CauseUnreachable:
		return &problem{c, fmt.Sprintf("%s is unreachable from here (%v): no route to that address; check the address in %s and this machine's network",
			s.addr, rootCause(err), s.flag)}
	case CauseTLS:
		return tlsProblem(s, err)
	}
	return &problem{CauseOther, fmt.Sprintf("connecting to %s failed: %v; check %s", s.addr, err, s.flag)}
}

func tlsProblem(s service, err error) *problem {
	return &problem{CauseTLS, fmt.Sprintf("TLS with %s (%s) failed (%v): the scheme or sslmode in %s does not match the server's, or its certificate is not trusted here",
		s.what, s.addr, rootCause(err), s.flag)}
}

// rootCause is the innermost error of a chain: "connection reset by peer" rather than the
// libraries' wording around it.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
