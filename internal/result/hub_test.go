package result

import (
	"fmt"
	"testing"
)

// TestSlowClientGetsTheLatest: a client that does not read holds one snapshot, the latest,
// and publishing never blocks on it.
func TestSlowClientGetsTheLatest(t *testing.T) {
	h := newHub()
	h.publish([]byte("first"))
	slow := h.subscribe()
	if got := string(<-slow.c); got != "first" {
		t.Fatalf("on subscribe: got %q, want the latest snapshot", got)
	}
	for i := range 1000 {
		h.publish(fmt.Appendf(nil, "snapshot %d", i))
	}
	if got := string(<-slow.c); got != "snapshot 999" {
		t.Fatalf("slow client got %q, want the latest, snapshot 999", got)
	}
	select {
	case b := <-slow.c:
		t.Fatalf("slow client got a backlog: %q", b)
	default:
	}
	h.unsubscribe(slow)
	if n := h.clients(); n != 0 {
		t.Fatalf("clients after unsubscribe: %d", n)
	}
}
