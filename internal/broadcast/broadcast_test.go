package broadcast

import (
	"context"
	"testing"
)

func TestHub(t *testing.T) {
	var h Hub
	ctx, cancel := context.WithCancel(context.Background())
	a, b := h.Subscribe(ctx), h.Subscribe(context.Background())
	for range 10 {
		h.Broadcast() // never blocks, however many signals are pending
	}
	for _, ch := range []<-chan struct{}{a, b} {
		<-ch
		select {
		case <-ch:
			t.Fatal("ten signals were not coalesced into one")
		default:
		}
	}
	cancel()
	if _, ok := <-a; ok {
		t.Fatal("channel not closed when its context ended")
	}
	h.Close()
	if _, ok := <-b; ok {
		t.Fatal("channel not closed with the hub")
	}
	if _, ok := <-h.Subscribe(context.Background()); ok {
		t.Fatal("subscription after Close is not closed")
	}
}
