// Command etcd is etcd's server, built from the go.etcd.io/etcd/server/v3 module
// at the version pinned in go.mod. (etcd's own main package lives in a module
// whose replace directives a dependent module cannot follow.)
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
