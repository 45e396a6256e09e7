package result

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/gobwas/ws"

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
	var snap snapshot
	if b := s.hub.snapshot(); b != nil {
		_ = json.Unmarshal(b, &snap) // our own encoding
	} else {
		snap.Result = s.cfg.Options.Result(nil)
	}
	// The drills on now, not as of the snapshot: result-push-stop holds the snapshot back.
	var statuses []voting.WorkerStatus
	if p := s.statuses.Load(); p != nil {
		statuses = *p
	}
	snap.Drills = s.drills(statuses)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(s.renderPage(snap))
}

// serveResults answers the latest snapshot. It never queries the store itself: Run keeps the
// snapshot current, so a flood of requests costs no database work.
func (s *Service) serveResults(w http.ResponseWriter, r *http.Request) {
	b := s.hub.snapshot()
	if b == nil {
		web.Error(w, r, s.log, fmt.Errorf("no tally read yet: %w", voting.ErrUnavailable), true)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// serveWebSocket upgrades the request and hands the connection to the hub, which sends the
// snapshot at once, then every new one, until the client goes away, stops reading, or the
// service stops. The handler returns right away, so net/http's goroutine and buffers for the
// request are freed: a connection then holds only its socket, a small struct and one reader
// goroutine.
func (s *Service) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	// A results page is served by this host, so only its own pages may open the stream: the
	// Origin's host must be the Host (a request without Origin is not from a browser page).
	if err := checkOrigin(r); err != nil {
		http.Error(w, "websocket: "+err.Error(), http.StatusForbidden)
		return
	}
	// A place is taken before the handshake is answered, so that a refusal is a plain 503
	// (the page retries with backoff) and handshakes in flight count against the limits.
	addr := s.clientAddr(r)
	if reason, limit := s.hub.admit(addr); reason != "" {
		s.refuse(w, r, addr, reason, limit)
		return
	}
	admitted := false
	defer func() {
		if !admitted {
			s.hub.release(addr)
		}
	}()
	// The upgrader answers a bad handshake itself, with a status (400, 405, 426) and why. It
	// writes on the hijacked connection, so the headers the middleware has set (security
	// headers) are handed to it for every answer, 101 included.
	conn, rw, _, err := (ws.HTTPUpgrader{Timeout: writeTimeout, Header: w.Header()}).Upgrade(r, w)
	if err != nil {
		if conn != nil {
			_ = conn.Close()
			web.SetHijackedStatus(w, rejectionStatus(err))
		}
		return
	}
	web.SetHijackedStatus(w, http.StatusSwitchingProtocols)
	// A client must wait for the handshake's answer before it sends a frame (RFC 6455 4.1),
	// so net/http's buffers hold nothing of the socket's: drop them and read the conn itself.
	if rw.Reader.Buffered() > 0 {
		_ = conn.Close()
		return
	}
	admitted = true
	s.hub.add(conn, addr)
}

// refuse answers a handshake past a limit with 503 and Retry-After, counts it, and logs it
// (at most a line a second per limit, see refusalLog) with what to do about it.
func (s *Service) refuse(w http.ResponseWriter, r *http.Request, addr netip.Addr, reason string, limit int) {
	s.refused.WithLabelValues(reason).Inc()
	if ok, unlogged := s.refusedLog.note(reason, time.Now()); ok {
		attrs := []any{"reason", reason, "limit", limit, "client", addr.String(), "refused_unlogged", unlogged}
		switch reason {
		case refusedProcess:
			attrs = append(attrs, "hint", "this process has --max-websockets clients: add result replicas, or raise it if the memory limit allows (4-7 KiB a client)")
		case refusedAddr:
			attrs = append(attrs, "hint", "this address has --max-websockets-per-client clients; if it is a proxy or load balancer, list it in --trusted-proxies so that its clients are told apart")
		}
		s.log.WarnContext(r.Context(), "websocket refused", attrs...)
	}
	w.Header().Set("Retry-After", "5")
	http.Error(w, "too many live connections: please retry in a moment", http.StatusServiceUnavailable)
}

// rejectionStatus is the status the upgrader answered a refused handshake with: the
// rejection's own, else 500, as ws.HTTPUpgrader decides it.
func rejectionStatus(err error) int {
	var rej *ws.ConnectionRejectedError
	if errors.As(err, &rej) && rej.StatusCode() != 0 {
		return rej.StatusCode()
	}
	return http.StatusInternalServerError
}
