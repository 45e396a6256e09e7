package main

import (
	"log/slog"
	"math"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memoryShare is the share of the container's memory limit (its cgroup's) that the Go
// runtime keeps the heap under (GOMEMLIMIT): nearing it, the runtime collects harder, before
// the kernel's OOM killer acts. The other fifth is for what the runtime does not steer by it
// but the cgroup counts: the kernel's socket buffers (thousands of WebSockets), page cache
// of written files, the binary. It is decided here, once, for every deployment: compose,
// kustomize and Helm set only the container's limit. GOMEMLIMIT in the environment wins, and
// AUTOMEMLIMIT=0.9 (another share) or AUTOMEMLIMIT=off is honoured, as the library documents.
const memoryShare = 0.8

// setMemoryLimit sets the runtime's soft memory limit to memoryShare of what limit reports
// (memlimit.FromCgroup in a process), and logs the outcome once. Outside a container, or
// where the cgroup sets no limit, the runtime keeps its default (no limit).
func setMemoryLimit(log *slog.Logger, limit memlimit.Provider) {
	set, err := memlimit.Set(memlimit.WithRatio(memoryShare), memlimit.WithProvider(limit))
	switch {
	case err != nil:
		log.Warn("memory limit: container limit not read; GOMEMLIMIT left as it was", "err", err)
	case set == math.MaxInt64:
		log.Debug("memory limit: none (no container limit, no GOMEMLIMIT)")
	case os.Getenv("GOMEMLIMIT") != "":
		log.Info("memory limit from the environment", "GOMEMLIMIT", set)
	default:
		log.Info("memory limit from the container's", "GOMEMLIMIT", set, "share", memoryShare)
	}
}
