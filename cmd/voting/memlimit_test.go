package main

import (
	"bytes"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestMemoryLimitIsAShareOfTheContainers: a process under a 100 MiB container limit keeps
// its heap under 80 MiB, and a GOMEMLIMIT set by hand wins. (The deployments set only the
// container's limit; the share is decided in one place, the binary.)
func TestMemoryLimitIsAShareOfTheContainers(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("AUTOMEMLIMIT", "")
	os.Unsetenv("AUTOMEMLIMIT") // restored when the test ends
	setMemoryLimit(log, memlimit.Limit(100<<20))
	if got, want := debug.SetMemoryLimit(-1), int64(80<<20); got != want {
		t.Errorf("under a 100 MiB container limit: GOMEMLIMIT %d, want %d (80%%)", got, want)
	}
	if !strings.Contains(logs.String(), "GOMEMLIMIT=83886080") {
		t.Errorf("the log does not say the limit: %s", logs.String())
	}

	t.Setenv("GOMEMLIMIT", "50MiB")
	debug.SetMemoryLimit(50 << 20) // what the runtime read from the variable at start
	setMemoryLimit(log, memlimit.Limit(100<<20))
	if got := debug.SetMemoryLimit(-1); got != 50<<20 {
		t.Errorf("with GOMEMLIMIT=50MiB: limit %d, want it kept", got)
	}
}
