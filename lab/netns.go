package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named namespaces are bind-mounted, as `ip netns` does,
// so `ip netns exec lvslab-lab.d1 sh` works for debugging.
const NetnsDir = "/run/netns"

// Prefix starts the name of every namespace and run directory a lab owns.
const Prefix = "lvslab-"

// nsName is the namespace of node (or bridge) in lab.
func nsName(lab, node string) string { return Prefix + lab + "." + node }

// nsThread is a goroutine locked to an OS thread that sits in one network
// namespace and runs the functions sent to it. The thread never switches
// back: when the goroutine ends, the locked thread exits with it, so no
// other goroutine ever runs in a namespace it did not ask for. Processes
// forked from it inherit its namespace (and, with Pdeathsig, die with it).
type nsThread struct {
	work chan func()
	done chan struct{}
}

// startThread starts a thread and runs enter on it first; enter moves the
// thread into its namespace (setns, or unshare for a new one).
func startThread(enter func() error) (*nsThread, error) {
	t := &nsThread{work: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		defer close(t.done)
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if err := enter(); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range t.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// run calls f on the thread and waits for it.
func (t *nsThread) run(f func() error) error {
	errc := make(chan error, 1)
	t.work <- func() { errc <- f() }
	return <-errc
}

// stop ends the thread; it exits with its namespace.
func (t *nsThread) stop() {
	close(t.work)
	<-t.done
}

// doIn runs f on a fresh thread inside the namespace at path. This and
// startThread are the only places that change a thread's namespace.
func doIn(path string, f func() error) error {
	t, err := startThread(func() error { return enterPath(path) })
	if err != nil {
		return err
	}
	defer t.stop()
	return t.run(f)
}

// enterPath moves this thread into the network namespace mounted at path,
// by the descriptor it opened, once fstatfs says the descriptor is a
// namespace (nsfs), as containernetworking's ns package checks: a path
// that is not a namespace mount is refused, not entered.
func enterPath(path string) error {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer h.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(h), &fs); err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("open namespace %s: not a namespace (filesystem type %#x)", path, fs.Type)
	}
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter namespace %s: %w", path, err)
	}
	return nil
}

// createNamedNS makes a new named namespace without moving the caller's
// thread and returns a handle to it.
func createNamedNS(name string) (netns.NsHandle, error) {
	var h netns.NsHandle
	t, err := startThread(func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		return netns.None(), fmt.Errorf("create namespace %s: %w", name, err)
	}
	t.stop()
	return h, nil
}

// deleteNamedNS unmounts and removes a named namespace. The kernel frees it,
// and destroys its veths, once no process or handle holds it.
func deleteNamedNS(name string) error {
	p := filepath.Join(NetnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace %s: %w", p, err)
	}
	return nil
}

// listNamedNS returns the names under NetnsDir that start with prefix.
func listNamedNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// nsInode identifies a namespace file (a bind mount or /proc/PID/ns/net).
func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// otherPIDs lists every process but this one.
func otherPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidsInNS lists the processes whose network namespace is one of inodes.
func pidsInNS(inodes map[uint64]bool) []int {
	var pids []int
	for _, pid := range otherPIDs() {
		if ino, err := nsInode(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && inodes[ino] {
			pids = append(pids, pid)
		}
	}
	return pids
}
