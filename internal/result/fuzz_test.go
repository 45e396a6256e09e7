package result_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/votingapp/voting/internal/web"
)

// panicLog records what net/http logs, which is where a panic of a handler goes.
type panicLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *panicLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *panicLog) panicked() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := strings.Index(l.buf.String(), "panic"); i >= 0 {
		return l.buf.String()[i:]
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// FuzzWebSocketHandshake sends any request line and handshake headers to the result
// service over a real connection. The server must not panic, must answer within 5 s, never
// with a 5xx of its own making (net/http's 501 and 505 for what it does not speak aside), and
// an answer of 101 must be a WebSocket: the Upgrade header, and the snapshot as the first
// text frame.
func FuzzWebSocketHandshake(f *testing.F) {
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	for _, s := range [][8]string{
		{"GET", "/ws", "websocket", "Upgrade", key, "13", "", ""},
		{"GET", "/ws", "websocket", "Upgrade", key, "13", "http://results.example", ""},
		{"GET", "/ws", "websocket", "Upgrade", key, "13", "https://evil.example", ""},
		{"GET", "/ws", "h2c", "Upgrade", key, "13", "", ""},
		{"GET", "/ws", "websocket", "keep-alive, Upgrade", key, "8", "", ""},
		{"GET", "/ws", "WebSocket", "upgrade", "", "13", "", ""},
		{"GET", "/ws", "websocket", "Upgrade", "short", "13", "null", ""},
		{"POST", "/ws", "websocket", "Upgrade", key, "13", "", "Content-Length: 3\r\n"},
		{"GET", "/ws?x=1", "websocket", "Upgrade", key, "13", "", "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"},
		{"GET", "/ws", "websocket", "Upgrade", key, "13", "", "Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"},
		{"GET", "/ws", "websocket", "Upgrade", key, "13", "", "Transfer-Encoding: chunked\r\n"},
		{"GET", "/ws", "websocket", "Upgrade", strings.Repeat("A", 4000), "13", "", ""},
		{"GET", "//ws/../ws", "websocket", "Upgrade", key, "13", "", ""},
		{"GET", "*", "websocket", "Upgrade", key, "13", "", ""},
		{"CONNECT", "/ws", "websocket", "Upgrade", key, "13", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, _, _ := newService(f, "a=Cats,b=Dogs")
	go svc.Run(ctx)
	var logs panicLog
	srv := httptest.NewUnstartedServer(web.SecurityHeaders(svc.Handler()))
	srv.Config.ErrorLog = log.New(&logs, "", 0)
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	// The snapshot a new client must get first.
	var snapshot []byte
	for deadline := time.Now().Add(10 * time.Second); snapshot == nil; time.Sleep(10 * time.Millisecond) {
		if resp, err := http.Get(srv.URL + "/api/results"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				snapshot = b
			}
		}
		if time.Now().After(deadline) {
			f.Fatal("no tally in 10 s")
		}
	}

	f.Fuzz(func(t *testing.T, method, target, upgrade, connection, key, version, origin, extra string) {
		var req strings.Builder
		fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, addr)
		for _, h := range [][2]string{{"Upgrade", upgrade}, {"Connection", connection}, {"Sec-WebSocket-Key", key}, {"Sec-WebSocket-Version", version}, {"Origin", origin}} {
			if h[1] != "" {
				fmt.Fprintf(&req, "%s: %s\r\n", h[0], h[1])
			}
		}
		req.WriteString(extra)
		req.WriteString("\r\n")

		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req.String()); err != nil {
			return // the server may close on a request it cannot parse before reading it all
		}
		// The server waits, rightly, for the rest of a request that is not complete (its
		// headers not ended, a body it declares not sent: net/http reads an unread body
		// before it answers), up to its read timeouts. A request not answered within a
		// second is ended, as a client that goes away would end it: then it must be
		// answered, or the connection closed, within 5 s.
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		ended := false
		if isTimeout(err) {
			ended = true
			_ = c.(*net.TCPConn).CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err = http.ReadResponse(br, nil)
		}
		if p := logs.panicked(); p != "" {
			t.Fatalf("the server panicked on %q: %s", req.String(), p)
		}
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("no answer in 5 s to %q, ended by the client after 1 s", req.String())
			}
			return // closed without an answer: net/http does that to some garbage
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented && resp.StatusCode != http.StatusHTTPVersionNotSupported:
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("answer %s to %q: %s", resp.Status, req.String(), b)
		case resp.StatusCode != http.StatusSwitchingProtocols:
			return
		}
		if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || resp.Header.Get("Sec-WebSocket-Accept") == "" {
			t.Fatalf("101 without a WebSocket upgrade to %q: %v", req.String(), resp.Header)
		}
		hd, err := ws.ReadHeader(br)
		if err != nil && ended && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
			return // the end of the request was the end of the client: it may go first
		}
		if err != nil {
			t.Fatalf("101 to %q, then no frame: %v", req.String(), err)
		}
		payload := make([]byte, hd.Length)
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatalf("101 to %q, then a short frame: %v", req.String(), err)
		}
		if hd.OpCode != ws.OpText || !bytes.Equal(payload, snapshot) {
			t.Fatalf("first frame after 101 to %q: %v %q, want the snapshot %q", req.String(), hd.OpCode, payload, snapshot)
		}
	})
}
