// Command etcd is the etcd image's one binary, built from the etcd release the control
// plane embeds: run as /usr/local/bin/etcd it is the server, as /usr/local/bin/etcdctl
// the client, so `kubectl exec etcd-0 -- etcdctl member list` works as with the
// upstream image.
package main

import (
	"os"
	"path/filepath"

	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "etcdctl":
		ctlv3.MustStart()
	default:
		etcdmain.Main(os.Args)
	}
}
