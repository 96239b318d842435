package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Removed lists what Down or Sweep removed.
type Removed struct {
	Namespaces []string
	Processes  []int
	RunDirs    []string
}

func (r Removed) String() string {
	return fmt.Sprintf("%d namespaces, %d processes, %d run dirs", len(r.Namespaces), len(r.Processes), len(r.RunDirs))
}

// Down stops and removes the lab called name from any process, using only
// what the kernel and the run directory show: processes inside the lab's
// namespaces get SIGTERM, then SIGKILL after grace; then the namespaces
// (and with them every veth and bridge) and the run directory go.
func Down(runDir, name string, grace time.Duration) (Removed, error) {
	if os.Geteuid() != 0 {
		return Removed{}, ErrNotRoot
	}
	return remove(runDir, nsName(name, ""), func(dir string) bool { return dir == name }, grace)
}

// Sweep removes the leftovers of every lab, or of the lab called name when
// it is not empty (after a crash, a SIGKILLed test, or a forgotten `up`):
// "lvslab-*" namespaces with every process inside them (SIGKILL), and run
// directories. It needs no state file and touches nothing else.
func Sweep(runDir, name string) (Removed, error) {
	if os.Geteuid() != 0 {
		return Removed{}, ErrNotRoot
	}
	if name != "" {
		return remove(runDir, nsName(name, ""), func(dir string) bool { return dir == name }, 0)
	}
	return remove(runDir, Prefix, func(string) bool { return true }, 0)
}

func remove(runDir, nsPrefix string, dirMatch func(string) bool, grace time.Duration) (Removed, error) {
	var r Removed
	var errs []error
	names, err := listNamedNS(nsPrefix)
	if err != nil {
		return r, fmt.Errorf("list namespaces: %w", err)
	}
	inodes := map[uint64]bool{}
	for _, n := range names {
		if ino, err := nsInode(filepath.Join(NetnsDir, n)); err == nil {
			inodes[ino] = true
		}
	}
	r.Processes = killInNS(inodes, grace)
	for _, n := range names {
		if err := deleteNamedNS(n); err != nil {
			errs = append(errs, err)
			continue
		}
		r.Namespaces = append(r.Namespaces, n)
	}
	ents, err := os.ReadDir(runDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("read %s: %w", runDir, err))
	}
	for _, e := range ents {
		// Lab names never start with a dot; .admit holds the admission
		// slots, which other processes may hold.
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || !dirMatch(e.Name()) {
			continue
		}
		dir := filepath.Join(runDir, e.Name())
		// Processes outside the lab's namespaces that work for it, such as
		// the qemu of a lab in a micro-VM, are those it recorded, if still
		// the same processes: never a process found by its command line.
		pidFiles, _ := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
		for _, f := range pidFiles {
			if pid, alive := readPIDFile(f); alive {
				syscall.Kill(pid, syscall.SIGKILL)
				r.Processes = append(r.Processes, pid)
			}
		}
		// The lab mounted a tmpfs here; a crash may leave it mounted.
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
			continue
		}
		r.RunDirs = append(r.RunDirs, dir)
	}
	return r, errors.Join(errs...)
}

// killInNS signals every process in the namespaces: SIGTERM first when
// grace > 0, then SIGKILL for whatever is left, and waits until none remains.
func killInNS(inodes map[uint64]bool, grace time.Duration) []int {
	if len(inodes) == 0 {
		return nil
	}
	pids := pidsInNS(inodes)
	if grace > 0 {
		signal(pids, syscall.SIGTERM)
		if waitGone(inodes, grace) {
			return pids
		}
	}
	signal(pidsInNS(inodes), syscall.SIGKILL)
	waitGone(inodes, 10*time.Second)
	return pids
}

func signal(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
}

// waitGone reports whether the namespaces emptied within d. Zombies do not
// count: their /proc/PID/ns links are gone.
func waitGone(inodes map[uint64]bool, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(pidsInNS(inodes)) == 0 {
			return true
		}
	}
	return false
}

// ReadState reads the state file of the lab called name.
func ReadState(runDir, name string) (*State, error) {
	if err := CheckLabName(name); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(runDir, name, "lab.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab %q is up (no %s): start one with `lvslab up`", name, filepath.Join(runDir, name, "lab.json"))
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", filepath.Join(runDir, name, "lab.json"), err)
	}
	return &st, nil
}

// NamespacePath is where the namespace of a box of a running lab is mounted.
func NamespacePath(lab, box string) string { return filepath.Join(NetnsDir, nsName(lab, box)) }

// Proc is a process and its command line.
type Proc struct {
	PID     int
	Cmdline string
}

func (p Proc) String() string { return fmt.Sprintf("%d %s", p.PID, p.Cmdline) }

// ProcessesMentioning returns the live processes, other than this one,
// whose command line contains s.
func ProcessesMentioning(s string) []Proc {
	var found []Proc
	for _, pid := range otherPIDs() {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmd) == 0 { // zombies have an empty cmdline
			continue
		}
		line := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if strings.Contains(line, s) {
			found = append(found, Proc{pid, line})
		}
	}
	return found
}
