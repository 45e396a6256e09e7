// Package broadcast fans a "something changed" signal out to any number of watchers without
// ever blocking the sender. The stores use it for Watch.
package broadcast

import (
	"context"
	"sync"
)

// Hub fans signals out to watchers. Each watcher's channel has a buffer of one and sends
// never block: a signal that finds one pending is dropped, since one is enough to make the
// watcher look again. The zero value is ready to use.
type Hub struct {
	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	closed bool
}

// Subscribe returns a new channel that receives signals and is closed when ctx is done or
// the hub is closed.
func (h *Hub) Subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch
	}
	if h.subs == nil {
		h.subs = map[chan struct{}]struct{}{}
	}
	h.subs[ch] = struct{}{}
	context.AfterFunc(ctx, func() { h.drop(ch) })
	return ch
}

func (h *Hub) drop(ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// Broadcast signals every watcher.
func (h *Hub) Broadcast() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Close closes every watcher's channel; later subscriptions get a closed channel.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}
