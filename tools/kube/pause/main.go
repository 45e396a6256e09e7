// Command pause is the pod sandbox's process for the cluster check's node: it holds the pod's
// namespaces open and does nothing until it is told to stop. It is what Kubernetes'
// own pause image does (a C program there, so it is written again here in Go, which needs no
// C toolchain and no image registry); as PID 1 of the sandbox it also reaps orphans.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	reap := make(chan os.Signal, 1)
	signal.Notify(reap, syscall.SIGCHLD)
	for {
		select {
		case <-sig:
			return
		case <-reap:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
