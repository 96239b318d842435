package scenarios

import "github.com/lvslab/lvslab/lab"

// running is a scenario run under way: what its event, its write
// workload and its flapping server act on. The lab, the cluster in it,
// the implementation and fix under test, the run's options, the client
// node and the VIP:port it dials, and the backends the run started.
type running struct {
	l        *lab.Lab
	c        Cluster
	impl     Implementation
	fix      Fix
	opts     Options
	client   string
	vip      string
	backends map[backendKey]*backend
}
