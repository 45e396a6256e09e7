// Command etcd is the etcd server, built from its Go module so that the API server test
// needs no prebuilt download. It only calls etcd's own entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
