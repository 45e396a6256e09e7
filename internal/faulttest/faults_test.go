package faulttest

import (
	"testing"
	"time"
)

// TestBaseline runs the load with no fault: the check itself, and the speed to compare with.
func TestBaseline(t *testing.T) {
	sys := newSystem(t, "everysec")
	_, url := sys.vote()
	sys.worker()
	start := time.Now()
	l := startLoad(t, url, loadVotes)
	rep := l.wait()
	sys.drain(time.Minute)
	t.Logf("cast and drained in %v", time.Since(start).Round(time.Millisecond))
	sys.requireNothingLost(rep)
}
