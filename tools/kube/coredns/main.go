// Command coredns is CoreDNS v1.15 with the plugins of a kubeadm cluster's Corefile, the way
// CoreDNS documents building with a chosen set of plugins: its own main imports
// core/plugin, which registers all of them (cloud DNS back-ends, tracing and more, a third of
// the source of the cluster's tools); this one registers only what the cluster's Corefile
// (deploy/kubetest/cluster/addons.go) and kubeadm's default use. A Corefile naming any other
// plugin fails to load with CoreDNS's own "unknown directive" error.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
