module meshfed.lab/etcd

go 1.24

// go.etcd.io/etcd/server/v3 replaces its sibling modules with folders of its
// repository; the published modules of the same release are required instead
// (they are what server/v3's own require lines name).
require go.etcd.io/etcd/server/v3 v3.5.24
