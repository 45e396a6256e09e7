package result

import (
	"sync"
)

// hub fans the latest snapshot out to every connected client. Each subscriber has a buffer
// of one: a new snapshot replaces one the client has not taken yet, so a slow client always
// gets the latest numbers and never holds up the others or grows memory.
type hub struct {
	mu     sync.Mutex
	latest []byte // the encoded snapshot, nil before the first tally
	subs   map[*subscription]struct{}
}

type subscription struct {
	c chan []byte
}

func newHub() *hub {
	return &hub{subs: map[*subscription]struct{}{}}
}

// publish makes b the latest snapshot and hands it to every subscriber. It returns how many
// undelivered older snapshots it replaced.
func (h *hub) publish(b []byte) (replaced int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.latest = b
	for s := range h.subs {
		select {
		case <-s.c: // drop the undelivered, older snapshot
			replaced++
		default:
		}
		s.c <- b // cannot block: the buffer is empty and only publish sends, under mu
	}
	return replaced
}

// snapshot returns the latest snapshot, or nil before the first tally.
func (h *hub) snapshot() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.latest
}

// subscribe returns a subscription that already holds the latest snapshot, if any, so a new
// client gets the numbers at once.
func (h *hub) subscribe() *subscription {
	s := &subscription{c: make(chan []byte, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.latest != nil {
		s.c <- h.latest
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

func (h *hub) clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
