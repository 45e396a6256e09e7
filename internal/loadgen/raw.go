package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawClient is a minimal HTTP/1.1 client for Config.Raw: one kept-alive connection, requests
// written by hand, and only the status, the voter cookie and the body's framing read from
// the answer. net/http's client costs about as much CPU per request as the vote service
// does, so on a small machine the generator would take half the CPU it is meant to measure;
// this one costs a fraction of that. It is not a general client: no TLS, no redirects, no
// proxies, one request at a time.
type rawClient struct {
	addr    string
	head    []byte // request line and fixed headers, up to the cookie
	json    bool
	timeout time.Duration

	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	buf  []byte
}

func newRawClient(base *url.URL, asJSON bool, timeout time.Duration, dial func(string) string) (*rawClient, error) {
	if base.Scheme != "http" {
		return nil, fmt.Errorf("loadgen: the raw client speaks plain http, not %q", base.Scheme)
	}
	addr := base.Host
	if base.Port() == "" {
		addr = net.JoinHostPort(base.Hostname(), "80")
	}
	path, ctype := base.Path+"/", "application/x-www-form-urlencoded"
	if asJSON {
		path, ctype = base.Path+"/api/vote", "application/json"
	}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: voting-loadgen\r\nContent-Type: %s\r\n", path, base.Host, ctype)
	return &rawClient{addr: dial(addr), head: []byte(head), json: asJSON, timeout: timeout}, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// cast sends one vote and returns the status and the voter id (the cookie the service set,
// or voter). Any error closes the connection; the next vote dials again.
func (c *rawClient) cast(voter, option string) (int, string, error) {
	status, got, err := c.roundTrip(voter, option)
	if err != nil {
		c.close()
	}
	return status, got, err
}

func (c *rawClient) roundTrip(voter, option string) (int, string, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return 0, "", err
		}
		c.conn, c.r, c.w = conn, bufio.NewReaderSize(conn, 8192), bufio.NewWriterSize(conn, 1024)
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, "", err
	}
	body := c.buf[:0]
	if c.json {
		body = append(append(append(body, `{"vote":"`...), option...), `"}`...)
	} else {
		body = append(append(body, "vote="...), url.QueryEscape(option)...)
	}
	c.buf = body
	c.w.Write(c.head)
	c.w.WriteString("Content-Length: ")
	c.w.WriteString(strconv.Itoa(len(body)))
	if voter != "" {
		c.w.WriteString("\r\nCookie: voter_id=")
		c.w.WriteString(voter)
	}
	c.w.WriteString("\r\n\r\n")
	c.w.Write(body)
	if err := c.w.Flush(); err != nil {
		return 0, "", err
	}
	return c.readResponse(voter)
}

var errBadResponse = errors.New("loadgen: malformed HTTP response")

func (c *rawClient) readResponse(voter string) (int, string, error) {
	line, err := c.line()
	if err != nil {
		return 0, "", err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, "", errBadResponse
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, "", errBadResponse
	}
	length, chunked, closing, got := -1, false, false, voter
	for {
		line, err := c.line()
		if err != nil {
			return 0, "", err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, "", errBadResponse
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, "", errBadResponse
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case asciiEqualFold(name, "connection"):
			closing = bytes.EqualFold(value, []byte("close"))
		case asciiEqualFold(name, "set-cookie"):
			if v, ok := bytes.CutPrefix(value, []byte("voter_id=")); ok {
				if i := bytes.IndexByte(v, ';'); i >= 0 {
					v = v[:i]
				}
				got = string(v)
			}
		}
	}
	switch {
	case chunked:
		err = c.skipChunked()
	case length >= 0:
		_, err = c.r.Discard(length)
	default:
		// No framing: the body runs to the end of the connection.
		_, err = io.Copy(io.Discard, c.r)
		closing = true
	}
	if err != nil {
		return 0, "", err
	}
	if closing {
		c.close()
	}
	return status, got, nil
}

// line returns the next line without its CRLF; it is valid until the next read.
func (c *rawClient) line() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errBadResponse
		}
		return nil, err
	}
	return bytes.TrimSuffix(bytes.TrimSuffix(l, []byte("\n")), []byte("\r")), nil
}

func (c *rawClient) skipChunked() error {
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 64)
		if err != nil || n < 0 {
			return errBadResponse
		}
		if n == 0 {
			for { // trailers, then the empty line
				l, err := c.line()
				if err != nil {
					return err
				}
				if len(l) == 0 {
					return nil
				}
			}
		}
		if _, err := c.r.Discard(int(n)); err != nil {
			return err
		}
		l, err = c.line()
		if err != nil {
			return err
		}
		if len(l) != 0 {
			return errBadResponse
		}
	}
}

func asciiEqualFold(b []byte, s string) bool { return bytes.EqualFold(b, []byte(s)) }
