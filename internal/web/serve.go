package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// NewServer returns an http.Server with the timeouts every server of ours needs. The header
// and idle timeouts bound slow or idle clients (slowloris). There is no WriteTimeout: the
// result server holds WebSockets open for hours; each socket write has its own deadline.
func NewServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Listen opens the server's listener now, so that a port in use fails the start, and so that
// tests can ask for port 0 and read the address back.
func Listen(srv *http.Server) (net.Listener, error) {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", srv.Addr, err)
	}
	return ln, nil
}

// Serve serves on ln until ctx is done, then shuts down gracefully within timeout: the
// listener closes at once and in-flight requests finish. It returns nil after a clean
// shutdown and the error if the server failed.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if err != nil {
		srv.Close() // hijacked connections (WebSockets) are closed by their own handlers
		return fmt.Errorf("shut down %s: %w", ln.Addr(), err)
	}
	return nil
}
