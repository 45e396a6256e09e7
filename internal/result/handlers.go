package result

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// WebSocket timing. A write that takes longer than writeTimeout means the client is not
// reading: it is dropped so it holds nothing. Pings every pingInterval keep proxies (whose
// idle timeouts are commonly 60 s) from closing a quiet socket and find dead peers.
const (
	writeTimeout = 5 * time.Second
	pingInterval = 25 * time.Second
)

func (s *Service) servePage(w http.ResponseWriter, r *http.Request) {
	// The page carries the current numbers, so it is complete without JavaScript; the
	// script then keeps it live over the WebSocket.
	res := voting.Result{}
	if b := s.hub.snapshot(); b != nil {
		_ = json.Unmarshal(b, &res) // our own encoding of a voting.Result
	} else {
		res = s.cfg.Options.Result(nil)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(s.renderPage(res))
}

// serveResults answers the latest snapshot. It never queries the store itself: Run keeps the
// snapshot current, so a flood of requests costs no database work.
func (s *Service) serveResults(w http.ResponseWriter, r *http.Request) {
	b := s.hub.snapshot()
	if b == nil {
		web.Error(w, r, s.log, errors.New("no tally read yet: "+voting.ErrUnavailable.Error()), true)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// serveWebSocket sends the snapshot on connect, then every new one, until the client goes
// away, stops reading, or the service stops.
func (s *Service) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	// coder/websocket refuses cross-origin handshakes by default (the Origin host must match
	// the Host header), which is what a results page served by this host needs.
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered the client
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context()) // we never expect messages; this handles close frames
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stopping:
			c.Close(websocket.StatusGoingAway, "server stopping")
			return
		case b := <-sub.c:
			if err := write(ctx, c, b); err != nil {
				s.dropClient(err)
				return
			}
			s.sent.Inc()
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				s.dropClient(err)
				return
			}
		}
	}
}

func write(ctx context.Context, c *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, b)
}

func (s *Service) dropClient(err error) {
	if errors.Is(err, context.Canceled) || websocket.CloseStatus(err) != -1 {
		return // the client left
	}
	s.clientsClosed.Inc()
	s.log.Debug("websocket client dropped", "err", err)
}
