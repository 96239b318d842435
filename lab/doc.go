// Package lab builds network-namespace labs from a Topology and tears them
// down again: one named namespace per node and per bridge, veth pairs created
// directly in their target namespaces, addresses and sysctls set in-process
// through netlink, processes (mariadbd, keepalived, the director, tcpdump)
// started inside a node, and a teardown stack popped in reverse by Close.
//
// The namespace rule: a network namespace belongs to an OS thread, not to a
// goroutine, and goroutines started while a thread sits in another namespace
// do not inherit it. So nothing in this package or its callers switches the
// calling goroutine's namespace. Work that must happen inside a node goes
// through one primitive, [Box.Do], which runs a function on a fresh thread
// locked into the namespace and lets that thread die afterwards. Prefer
// handles bound to a namespace (Box.Netlink, ipvs.New(Box.Path())) and
// sockets dialled inside it (Box.DialContext): both work from any goroutine.
//
// Every kernel object a lab creates lives in a namespace named
// "lvslab-<lab>.<node>", so two labs coexist and Sweep removes only what a
// lab made.
package lab
