package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// Process is a command running inside a box, in its own process group, with
// stdout and stderr in a log file of the lab's run directory.
type Process struct {
	Name string
	Box  string
	// Log is the path of the combined stdout/stderr log.
	Log     string
	pidFile string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start runs argv inside the box. Unless the lab is detached, the process
// gets SIGKILL when this Go process dies. Close stops it.
func (b *Box) Start(name string, argv []string) (*Process, error) {
	l := b.lab
	logDir, pidDir := filepath.Join(l.Dir, "logs"), filepath.Join(l.Dir, "pids")
	for _, d := range []string{logDir, pidDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start %s in %s: %w", name, b.Name, err)
		}
	}
	p := &Process{Name: name, Box: b.Name, Log: filepath.Join(logDir, b.Name+"."+name+".log"), done: make(chan struct{})}
	out, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, b.Name, err)
	}
	defer out.Close()
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Dir = l.Dir
	attr := &syscall.SysProcAttr{Setpgid: true}
	start := b.launcher.run
	if l.opts.Detach {
		// A session of its own: no terminal signal reaches it after `up`.
		attr = &syscall.SysProcAttr{Setsid: true}
		start = func(f func() error) error { return b.Do(f) }
	} else {
		// Pdeathsig fires when the forking thread exits: the launcher
		// lives until Close, or until this process dies.
		attr.Pdeathsig = syscall.SIGKILL
	}
	p.cmd.SysProcAttr = attr
	if err := start(p.cmd.Start); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, b.Name, err)
	}
	p.pidFile = filepath.Join(pidDir, b.Name+"."+name+".pid")
	writePIDFile(p.pidFile, p.cmd.Process.Pid)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	l.pushStep(undoStep{what: fmt.Sprintf("stop %s in %s", name, b.Name), fn: func() error { return p.Stop(StopGrace) }, together: true})
	l.mu.Lock()
	l.procs[b.Name+"."+name] = p
	l.mu.Unlock()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (os/exec's Wait error), once Done.
func (p *Process) Err() error { <-p.done; return p.err }

// Stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pg := -p.cmd.Process.Pid
	if err := syscall.Kill(pg, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s in %s: %w", p.Name, p.Box, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	syscall.Kill(pg, syscall.SIGKILL)
	<-p.done
	return nil
}

// Signal sends sig to the process group: SIGSTOP freezes all of it
// (keepalived's VRRP and checker children too), SIGCONT thaws it.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %s in %s: %w", p.Name, p.Box, err)
	}
	return nil
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Process) Kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// RecordPID records a process that works for the lab in dir from outside
// its namespaces (the qemu of a lab in a micro-VM), for status and sweep.
func RecordPID(dir, name string, pid int) error {
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o755); err != nil {
		return err
	}
	return writePIDFile(filepath.Join(dir, "pids", name+".pid"), pid)
}

// A pid file holds "PID START": START is the process's start time in
// clock ticks since boot (/proc/PID/stat, field 22), so a pid the kernel
// has given to another process since is not taken for the lab's.
func writePIDFile(path string, pid int) error {
	start, _, err := procStat(pid)
	if err != nil {
		return err
	}
	return os.WriteFile(path, fmt.Appendf(nil, "%d %d\n", pid, start), 0o644)
}

// readPIDFile returns the pid a pid file names and whether that very
// process still runs (a zombie does not).
func readPIDFile(path string) (pid int, alive bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var start uint64
	if n, _ := fmt.Sscan(string(data), &pid, &start); n != 2 || pid <= 0 {
		return pid, false
	}
	now, zombie, err := procStat(pid)
	return pid, err == nil && now == start && !zombie
}

// Alive reports whether process pid runs: it exists and is not a zombie
// (kill(pid, 0) succeeds on both, and on every process for pid -1).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	_, zombie, err := procStat(pid)
	return err == nil && !zombie
}

// procStat reads a process's start time, in clock ticks since boot, and
// whether it is a zombie.
func procStat(pid int) (start uint64, zombie bool, err error) {
	fields, err := statFields(pid)
	if err != nil {
		return 0, false, err
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	return start, fields[0] == "Z", err
}
