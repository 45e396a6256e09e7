package proctest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// WebSocket is a test's client of the result service's WebSocket: it reads the text messages,
// answers pings as a browser does, and reports how the server closed it.
type WebSocket struct {
	conn net.Conn
	rw   io.ReadWriter // reads what the handshake buffered first, then the connection
}

// DialWebSocket opens a WebSocket to url (http://, https://, ws:// or wss://), with header's
// fields (such as Origin) added to the handshake. It fails on any answer but 101; the error
// then says the status (ws.StatusError).
func DialWebSocket(ctx context.Context, url string, header http.Header) (*WebSocket, error) {
	url = strings.Replace(strings.Replace(url, "https://", "wss://", 1), "http://", "ws://", 1)
	d := ws.Dialer{}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	var r io.Reader = conn
	if br != nil { // the server wrote a frame right after its answer
		r = io.MultiReader(bufferedOnly{br}, conn)
	}
	return &WebSocket{conn: conn, rw: struct {
		io.Reader
		io.Writer
	}{r, conn}}, nil
}

// MustDialWebSocket is DialWebSocket for a test: it fails the test on an error and closes the
// socket when the test ends.
func MustDialWebSocket(t interface {
	Helper()
	Fatalf(string, ...any)
	Cleanup(func())
}, url string) *WebSocket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialWebSocket(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// bufferedOnly reads what a bufio.Reader holds, and then reports EOF rather than reading more.
type bufferedOnly struct{ br *bufio.Reader }

func (b bufferedOnly) Read(p []byte) (int, error) {
	if b.br.Buffered() == 0 {
		return 0, io.EOF
	}
	return b.br.Read(p[:min(len(p), b.br.Buffered())])
}

// Read returns the next text or binary message, waiting timeout at most (0: no limit). Pings
// are answered on the way. When the server closes the socket the error is a
// wsutil.ClosedError; CloseCode reads its status.
func (c *WebSocket) Read(timeout time.Duration) ([]byte, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := c.conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	b, _, err := wsutil.ReadServerData(c.rw)
	return b, err
}

// Write sends a frame as a client does (masked), for tests of how the server handles what
// clients send.
func (c *WebSocket) Write(op ws.OpCode, payload []byte) error {
	return ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewFrame(op, true, payload)))
}

// Close sends a normal close and closes the connection without waiting for the answer.
func (c *WebSocket) Close() error {
	werr := c.Write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	return errors.Join(werr, c.conn.Close())
}

// CloseNow closes the connection without a close frame, as a client that vanishes does.
func (c *WebSocket) CloseNow() error { return c.conn.Close() }

// CloseCode returns the status the server closed with when err is the close Read returned,
// and -1 otherwise (e.g. the connection was cut).
func CloseCode(err error) int {
	var ce wsutil.ClosedError
	if errors.As(err, &ce) {
		return int(ce.Code)
	}
	return -1
}
