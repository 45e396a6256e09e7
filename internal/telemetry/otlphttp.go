package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/votingapp/voting/internal/buildinfo"
)

// The OTLP/HTTP transport below replaces the SDK's otlptracehttp exporter. That exporter
// links google.golang.org/grpc (through its configuration package and the collector's
// generated service code), and grpc links golang.org/x/net/trace, html/template and
// text/template. Once text/template is in a binary the linker must keep every exported
// method of every reachable type (templates call methods by name through reflection), which
// cost about 9 MB of the binary, and grpc itself 2.3 MB more. The SDK's generic otlptrace
// exporter still turns spans into OTLP messages and the batcher still batches them; this
// file only sends them.

const (
	defaultOTLPEndpoint = "http://localhost:4318"
	defaultOTLPTimeout  = 10 * time.Second
	// maxErrorBody is how much of a failed response's body goes into the error.
	maxErrorBody = 256
	// maxDrain bounds what is read from a response before closing it: reading the body to
	// its end lets the connection be reused, but a huge body is not worth waiting for.
	maxDrain = 64 << 10
)

// otlpHTTPClient is an otlptrace.Client that POSTs ExportTraceServiceRequest messages
// (protobuf, optionally gzipped) to an OTLP/HTTP endpoint, retrying the responses the
// OTLP/HTTP specification calls retryable.
type otlpHTTPClient struct {
	endpoint string
	headers  map[string]string
	timeout  time.Duration
	gzip     bool
	http     *http.Client

	// backoff is the wait before the first retry; it doubles up to maxBackoff. A field so
	// tests can shorten it.
	backoff, maxBackoff time.Duration

	stopOnce sync.Once
}

// otlpEnv returns the signal-specific variable OTEL_EXPORTER_OTLP_TRACES_<name> when it is
// set, else the generic OTEL_EXPORTER_OTLP_<name>, with the name of the one it used (for
// error messages). The specification says the signal-specific one wins.
func otlpEnv(getenv func(string) string, name string) (value, variable string) {
	if v := getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
		return v, "OTEL_EXPORTER_OTLP_TRACES_" + name
	}
	return getenv("OTEL_EXPORTER_OTLP_" + name), "OTEL_EXPORTER_OTLP_" + name
}

// newOTLPHTTPClient reads the standard OTLP exporter variables through getenv. Anything it
// cannot honour (another protocol, an unknown compression, a malformed value) is an error
// naming the variable, so a misconfiguration stops the process at startup instead of
// silently losing traces.
func newOTLPHTTPClient(getenv func(string) string) (*otlpHTTPClient, error) {
	c := &otlpHTTPClient{
		headers:    map[string]string{},
		timeout:    defaultOTLPTimeout,
		backoff:    500 * time.Millisecond,
		maxBackoff: 5 * time.Second,
	}

	switch v, name := otlpEnv(getenv, "PROTOCOL"); v {
	case "", "http/protobuf":
	default:
		return nil, fmt.Errorf("%s=%s is not supported: traces are exported over OTLP/HTTP with protobuf bodies only (http/protobuf)", name, v)
	}

	// The signal-specific endpoint is the full URL, used as is; the generic one is a base
	// URL that gets the signal's path appended.
	endpoint, name := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	if endpoint == "" {
		base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		name = "OTEL_EXPORTER_OTLP_ENDPOINT"
		if base == "" {
			base = defaultOTLPEndpoint
		}
		endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: %q is not an http:// or https:// URL", name, endpoint)
	}
	c.endpoint = u.String()

	if v, name := otlpEnv(getenv, "HEADERS"); v != "" {
		for _, kv := range strings.Split(v, ",") {
			if strings.TrimSpace(kv) == "" {
				continue
			}
			k, val, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("%s: %q is not key=value", name, kv)
			}
			dec, err := url.PathUnescape(strings.TrimSpace(val))
			if err != nil {
				return nil, fmt.Errorf("%s: value of %s: %w", name, k, err)
			}
			c.headers[k] = dec
		}
	}

	if v, name := otlpEnv(getenv, "TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return nil, fmt.Errorf("%s: %q is not a positive number of milliseconds", name, v)
		}
		c.timeout = time.Duration(ms) * time.Millisecond
	}

	switch v, name := otlpEnv(getenv, "COMPRESSION"); strings.ToLower(v) {
	case "", "none":
	case "gzip":
		c.gzip = true
	default:
		return nil, fmt.Errorf("%s=%s is not supported (gzip or none)", name, v)
	}

	tlsConf, err := otlpTLS(getenv)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConf != nil {
		tr.TLSClientConfig = tlsConf
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// otlpTLS returns the TLS configuration the certificate variables ask for, or nil for the
// default (the system roots, no client certificate).
func otlpTLS(getenv func(string) string) (*tls.Config, error) {
	ca, caName := otlpEnv(getenv, "CERTIFICATE")
	cert, certName := otlpEnv(getenv, "CLIENT_CERTIFICATE")
	key, keyName := otlpEnv(getenv, "CLIENT_KEY")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caName, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in %s", caName, ca)
		}
		conf.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("%s and %s must be set together", certName, keyName)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", certName, keyName, err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

// Start does nothing: connections are made on the first export.
func (c *otlpHTTPClient) Start(context.Context) error { return nil }

// Stop closes idle connections. Exports still running finish or give up on their own
// deadline.
func (c *otlpHTTPClient) Stop(context.Context) error {
	c.stopOnce.Do(c.http.CloseIdleConnections)
	return nil
}

// encodeTraceRequest returns the protobuf encoding of an ExportTraceServiceRequest holding
// spans. The message has one field, `repeated ResourceSpans resource_spans = 1`, so it is
// written here with protowire rather than through the generated collector package, which
// would link grpc (see the top of this file).
func encodeTraceRequest(spans []*tracepb.ResourceSpans) ([]byte, error) {
	var b []byte
	for _, rs := range spans {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(proto.Size(rs)))
		var err error
		if b, err = (proto.MarshalOptions{}).MarshalAppend(b, rs); err != nil {
			return nil, fmt.Errorf("encode resource spans: %w", err)
		}
	}
	return b, nil
}

// UploadTraces sends one export request, retrying 429, 502, 503 and 504 responses and failed
// connections (as the OTLP/HTTP specification asks) with exponential backoff, or after the
// server's Retry-After, until the export timeout or ctx's deadline, whichever comes first (on
// shutdown the caller's flush deadline bounds it). Other responses are final.
func (c *otlpHTTPClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	if len(spans) == 0 {
		return nil
	}
	body, err := encodeTraceRequest(spans)
	if err != nil {
		return err
	}
	if c.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		if _, err := zw.Write(body); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		body = zb.Bytes()
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	wait := c.backoff
	var last error // the last retryable failure
	for attempt := 1; ; attempt++ {
		retryAfter, err := c.post(ctx, body)
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			if last != nil && ctx.Err() != nil {
				// The deadline cut a retry short: the failure before it says more.
				return fmt.Errorf("giving up after %d attempts (%w): %w", attempt, ctx.Err(), last)
			}
			return perm.err
		}
		last = err
		// Half the backoff plus a random part, so processes that failed together do not retry
		// together.
		delay := wait/2 + rand.N(wait/2+1)
		if retryAfter > 0 {
			delay = retryAfter
		}
		wait = min(2*wait, c.maxBackoff)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("giving up after %d attempts: %w (%w)", attempt, err, ctx.Err())
		case <-t.C:
		}
	}
}

// permanentError marks a failure that another attempt would not fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }

// post makes one attempt. It returns nil on success, a permanentError for responses that
// must not be retried, or a retryable error with the server's Retry-After, if any.
func (c *otlpHTTPClient) post(ctx context.Context, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, permanentError{err}
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "voting/"+buildinfo.Version())
	if c.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, permanentError{fmt.Errorf("export to %s: %w", c.endpoint, err)}
		}
		return 0, fmt.Errorf("export to %s: %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	// Read what is needed, then the rest, so the connection goes back to the pool.
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxDrain))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if rejected, msg := partialSuccess(resp.Header.Get("Content-Type"), data); rejected > 0 || msg != "" {
			// Not retried: the collector kept the rest and says the rejected spans would be
			// rejected again.
			return 0, permanentError{fmt.Errorf("export to %s: collector rejected %d spans: %s", c.endpoint, rejected, msg)}
		}
		return 0, nil
	}
	err = fmt.Errorf("export to %s: %s%s", c.endpoint, resp.Status, statusMessage(resp.Header.Get("Content-Type"), data))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return parseRetryAfter(resp.Header.Get("Retry-After")), err
	}
	return 0, permanentError{err}
}

// parseRetryAfter reads a Retry-After value in seconds or as an HTTP date; 0 when absent or
// malformed (the caller's backoff applies then).
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// statusMessage returns ": message" from a failed response's body: the message field of a
// protobuf google.rpc.Status (field 2) as the specification prescribes, or else the start of
// a plain-text body; "" when there is none.
func statusMessage(contentType string, body []byte) string {
	msg := string(body)
	if strings.HasPrefix(contentType, "application/x-protobuf") {
		msg = protoStringField(body, 2)
	}
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return ""
	}
	if len(msg) > maxErrorBody {
		msg = msg[:maxErrorBody] + "..."
	}
	return ": " + strings.ToValidUTF8(msg, "?")
}

// partialSuccess decodes the partial_success field (1) of an ExportTraceServiceResponse:
// rejected_spans (1) and error_message (2).
func partialSuccess(contentType string, body []byte) (rejected int64, msg string) {
	if !strings.HasPrefix(contentType, "application/x-protobuf") || len(body) == 0 {
		return 0, ""
	}
	ps := protoBytesField(body, 1)
	if ps == nil {
		return 0, ""
	}
	for len(ps) > 0 {
		num, typ, n := protowire.ConsumeTag(ps)
		if n < 0 {
			break
		}
		ps = ps[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(ps)
			if m < 0 {
				return rejected, msg
			}
			rejected, ps = int64(v), ps[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(ps)
			if m < 0 {
				return rejected, msg
			}
			msg, ps = string(v), ps[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, ps)
			if m < 0 {
				return rejected, msg
			}
			ps = ps[m:]
		}
	}
	return rejected, msg
}

// protoBytesField returns the last length-delimited field num of a protobuf message, or nil.
func protoBytesField(b []byte, num protowire.Number) []byte {
	var out []byte
	for len(b) > 0 {
		n, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return out
		}
		b = b[m:]
		if n == num && typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return out
			}
			out, b = v, b[k:]
			continue
		}
		k := protowire.ConsumeFieldValue(n, typ, b)
		if k < 0 {
			return out
		}
		b = b[k:]
	}
	return out
}

// protoStringField is protoBytesField as a string.
func protoStringField(b []byte, num protowire.Number) string {
	return string(protoBytesField(b, num))
}
