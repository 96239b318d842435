package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Status is a running lab as the kernel shows it, for `lvslab status`.
type Status struct {
	State     *State
	Boxes     []BoxStatus
	Processes []ProcStatus
}

// BoxStatus is one namespace and its interfaces.
type BoxStatus struct {
	Name, Namespace string
	Up              bool
	Links           []LinkStatus
}

// LinkStatus is one interface with its MAC and IPv4 addresses.
type LinkStatus struct {
	Name, MAC, State, Alias string
	Addrs                   []string
}

// ProcStatus is a process the lab started, from its pid file.
type ProcStatus struct {
	Box, Name, Log string
	PID            int
	Alive          bool
}

// Inspect reads a running lab's state file and asks the kernel about its
// namespaces, links and processes.
func Inspect(runDir, name string) (*Status, error) {
	st, err := ReadState(runDir, name)
	if err != nil {
		return nil, err
	}
	s := &Status{State: st}
	for _, b := range st.Topology.BoxNames() {
		bs, err := inspectBox(name, b)
		if err != nil {
			return nil, err
		}
		s.Boxes = append(s.Boxes, bs)
	}
	pids, _ := filepath.Glob(filepath.Join(runDir, name, "pids", "*.pid"))
	for _, f := range pids {
		box, proc, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".pid"), ".")
		pid, alive := readPIDFile(f)
		s.Processes = append(s.Processes, ProcStatus{Box: box, Name: proc, PID: pid, Alive: alive,
			Log: filepath.Join(runDir, name, "logs", box+"."+proc+".log")})
	}
	return s, nil
}

func inspectBox(lab, box string) (BoxStatus, error) {
	bs := BoxStatus{Name: box, Namespace: nsName(lab, box)}
	h, err := netns.GetFromPath(NamespacePath(lab, box))
	if err != nil {
		return bs, nil // namespace gone: Up stays false
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return bs, fmt.Errorf("netlink in %s: %w", bs.Namespace, err)
	}
	defer nl.Close()
	bs.Up = true
	links, err := nl.LinkList()
	if err != nil {
		return bs, fmt.Errorf("list links in %s: %w", bs.Namespace, err)
	}
	for _, l := range links {
		a := l.Attrs()
		ls := LinkStatus{Name: a.Name, MAC: a.HardwareAddr.String(), State: a.OperState.String(), Alias: a.Alias}
		addrs, _ := nl.AddrList(l, netlink.FAMILY_V4)
		for _, ad := range addrs {
			if !ad.IP.IsLoopback() {
				ls.Addrs = append(ls.Addrs, ad.IPNet.String())
			}
		}
		if a.Name == "lo" && len(ls.Addrs) == 0 {
			continue
		}
		bs.Links = append(bs.Links, ls)
	}
	slices.SortFunc(bs.Links, func(a, b LinkStatus) int { return strings.Compare(a.Name, b.Name) })
	return bs, nil
}

// Exec replaces this process with argv running inside a box of a running
// lab, so the command's exit code is lvslab's. It returns only on error.
func Exec(lab, box string, argv []string) error {
	if err := errors.Join(CheckLabName(lab), CheckNodeName(box)); err != nil {
		return err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	ns := NamespacePath(lab, box)
	if _, err := os.Stat(ns); err != nil {
		return fmt.Errorf("no box %q in lab %q (%s missing)", box, lab, ns)
	}
	return doIn(ns, func() error { return syscall.Exec(path, argv, os.Environ()) })
}

// Run runs argv inside the box, waits, and returns its exit code; output
// goes to stdout and stderr. Cancelling ctx kills it.
func (b *Box) Run(ctx context.Context, argv []string, stdout, stderr io.Writer) (int, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Once ctx ends and the command is killed, a child it left holding
	// its output must not hold Wait (and the caller) forever.
	cmd.WaitDelay = 2 * time.Second
	if err := b.Do(cmd.Start); err != nil {
		return 0, fmt.Errorf("run %s in %s: %w", argv[0], b.Name, err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// Problems is nil for a whole lab, else an error naming the boxes whose
// namespace is missing and the processes that are gone (a killed up, a
// backend that died): status exits non-zero on it.
func (s *Status) Problems() error {
	var bad []string
	for _, b := range s.Boxes {
		if !b.Up {
			bad = append(bad, "box "+b.Name+" missing")
		}
	}
	for _, p := range s.Processes {
		if !p.Alive {
			bad = append(bad, fmt.Sprintf("%s in %s exited (pid %d)", p.Name, p.Box, p.PID))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("lab is not whole: %s", strings.Join(bad, "; "))
}

// Stacks describes every process in the box's namespace for a report of a
// hang: "pid comm: wchan" and the kernel stack (/proc/PID/stack, root
// only), one process a line.
func (b *Box) Stacks() string {
	ino, err := nsInode(b.Path())
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, pid := range pidsInNS(map[uint64]bool{ino: true}) {
		out = append(out, pidStack(pid))
	}
	return strings.Join(out, "; ")
}

// KernelThreadStacks is where the kernel threads whose name starts with
// prefix wait ("ipvs-": IPVS's sync daemons, which keepalived starts and
// stops as VRRP moves), with their state: the evidence of a hang inside
// the kernel. Kernel threads are in no lab's namespace: every lab's are
// listed.
func KernelThreadStacks(prefix string) string {
	var out []string
	for _, pid := range otherPIDs() {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.HasPrefix(string(comm), prefix) {
			out = append(out, pidStack(pid))
		}
	}
	if len(out) == 0 {
		return "no " + prefix + "* kernel thread"
	}
	return strings.Join(out, "; ")
}

// pidStack is one process's name, state, wait channel and kernel stack.
func pidStack(pid int) string {
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid))
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	state := "?"
	if _, after, ok := strings.Cut(string(stat), ") "); ok && after != "" {
		state = after[:1] // R, S, D (uninterruptible: a hang's mark), ...
	}
	var frames []string
	for _, l := range strings.Split(strings.TrimSpace(string(stack)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			frames = append(frames, f[1])
		}
	}
	return fmt.Sprintf("%d %s %s: %s [%s]", pid, strings.TrimSpace(string(comm)), state, wchan, strings.Join(frames, " < "))
}

// Attach opens a running lab that another process built, to observe it:
// each box with a netlink handle in its namespace (Box.Do and Netlink
// work; Box.Start does not). Close releases the handles and leaves the
// lab running.
func Attach(runDir, name string) (_ *Lab, err error) {
	st, err := ReadState(runDir, name)
	if err != nil {
		return nil, err
	}
	l := &Lab{Name: name, Topo: st.Topology, Dir: filepath.Join(runDir, name), boxes: map[string]*Box{}}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	for _, b := range st.Topology.BoxNames() {
		h, err := netns.GetFromPath(NamespacePath(name, b))
		if err != nil {
			return nil, fmt.Errorf("attach to %s of lab %s: %w", b, name, err)
		}
		l.push("close handle of "+b, h.Close)
		nl, err := netlink.NewHandleAt(h)
		if err != nil {
			return nil, fmt.Errorf("netlink handle in %s of lab %s: %w", b, name, err)
		}
		l.push("close netlink of "+b, func() error { nl.Close(); return nil })
		l.boxes[b] = &Box{Name: b, lab: l, ns: h, nl: nl}
	}
	return l, nil
}
