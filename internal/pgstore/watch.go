package pgstore

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// idleCheck is how long the listener waits for a notification before it checks its
	// connection: a peer that vanished without closing the socket would otherwise go
	// unnoticed until TCP keepalive gives up, minutes later.
	idleCheck = 15 * time.Second
	// Reconnection backoff: quick first retries for a restarting server, then capped so
	// that a long outage costs one attempt every few seconds.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Watch returns a channel that receives a value soon after a commit changed the tally. The
// channel has room for one value: while one is pending, further changes add nothing, so a
// slow reader sees one signal for many changes and never holds anyone up. It also receives
// a value whenever the listener (re)connects, since changes may have been missed meanwhile.
// The channel is closed when ctx is done or the store is closed.
//
// All watchers share one connection that LISTENs for the counts triggers' notifications;
// it reconnects by itself, with backoff, when the connection drops.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	ch := s.hub.Subscribe(ctx)
	s.listenOnce.Do(func() { go s.listen(s.listenCtx) })
	return ch
}

// listen keeps one listening connection until ctx is done.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	backoff := minBackoff
	for ctx.Err() == nil {
		if s.listenConn(ctx) {
			backoff = minBackoff
		}
		// Full jitter, so that many processes do not reconnect in step after a restart.
		wait := time.Duration(rand.Int64N(int64(backoff))) + minBackoff/2
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenConn connects, listens and relays notifications for this schema until the
// connection fails or ctx is done. It reports whether it got as far as listening.
func (s *Store) listenConn(ctx context.Context) (listened bool) {
	cfg := s.pool.Config().ConnConfig
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false
	}
	defer func() {
		s.listenerPID.Store(0)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // the connection is being dropped either way
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false
	}
	var schema *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil || schema == nil {
		return false
	}
	s.listenerPID.Store(conn.PgConn().PID())
	s.hub.Broadcast() // changes may have been committed while no one listened
	for {
		waitCtx, cancel := context.WithTimeout(ctx, s.idleCheck)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true
		case err == nil:
			if n.Payload == *schema {
				s.hub.Broadcast()
			}
		case waitCtx.Err() != nil: // idle: check that the connection still works
			pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return true
			}
		default:
			return true
		}
	}
}
