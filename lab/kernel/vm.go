package kernel

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab/runenv"
	"github.com/prometheus/procfs"
)

// MicroVM runs commands in a throwaway qemu VM booted from Kernel with the
// host's userspace.
type MicroVM struct {
	Kernel *Kernel
	// Init is the static lvslab binary that becomes the guest's /init.
	Init string
	// MemoryMB is the guest's memory (default 2048).
	MemoryMB int
	// CPUs is the guest's vCPU count (default: the host's cores).
	CPUs int
	// Timeout kills qemu after this long (0: no limit).
	Timeout time.Duration
	// BootArgs replaces the kernel command line (default: bootArgs).
	BootArgs string
	// Accel is the accelerator (default TCG): see ChooseAccel.
	Accel Accel
	// KVMBootBound is how long a KVM guest may take to report from /init
	// before it counts as not booting (default 10 s).
	KVMBootBound time.Duration
}

// ErrTimeout is returned when a micro-VM run hits its Timeout.
var ErrTimeout = errors.New("micro-VM timed out")

// QEMU returns the path of qemu-system-x86_64 or an error naming the package.
func QEMU() (string, error) {
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", fmt.Errorf("qemu-system-x86_64 not found: install qemu-system-x86 (make deps)")
	}
	return p, nil
}

// Run boots the VM, runs spec inside it with stdout and stderr streamed to
// the given writers, and returns the command's exit code with guest-side
// timings. Cancelling ctx (Ctrl-C) or the Timeout kills qemu. A KVM boot
// whose guest dies or stays silent before /init starts the command is
// booted again under TCG, once, with a warning on stderr, when the
// accelerator was chosen automatically (Accel.Fallback).
func (v *MicroVM) Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) (Status, error) {
	if v.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, v.Timeout, ErrTimeout)
		defer cancel()
	}
	if !slices.ContainsFunc(spec.Env, func(kv string) bool { return strings.HasPrefix(kv, runenv.Host+"=") }) {
		spec.Env = append(slices.Clip(spec.Env), runenv.Host+"="+runenv.HostName())
	}
	accel := cmp.Or(v.Accel.Name, TCG)
	st, err := v.runOnce(ctx, accel, spec, stdout, stderr)
	if accel == KVM && v.Accel.Fallback && errors.Is(err, errNotStarted) {
		fmt.Fprintf(stderr, "lvslab vm: warning: KVM boot failed, running again under TCG: %s\n", firstLine(err.Error()))
		st, err = v.runOnce(ctx, TCG, spec, stdout, stderr)
	} else if accel == KVM && errors.Is(err, errNotStarted) {
		err = fmt.Errorf("%w (%s: try --accel tcg)", err, v.Accel)
	}
	return st, err
}

func (v *MicroVM) runOnce(ctx context.Context, accel string, spec Spec, stdout, stderr io.Writer) (Status, error) {
	var st Status
	ctl, err := os.MkdirTemp("", "lvslab-vm-")
	if err != nil {
		return st, err
	}
	// LVSLAB_VM_DEBUG=1 keeps the control directory (initramfs, spec,
	// console.log) and prints the qemu command line.
	debug := os.Getenv("LVSLAB_VM_DEBUG") != ""
	if !debug {
		defer os.RemoveAll(ctl)
	}
	// qemu writes the command's output into pipes (virtio-serial ports
	// backed by file chardevs on /proc/self/fd/N); we copy them out.
	outR, outW, err := os.Pipe()
	if err != nil {
		return st, err
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return st, err
	}
	defer errR.Close()
	cmd, err := v.command(ctl, accel, spec, "/proc/self/fd/3", "/proc/self/fd/4")
	if err != nil {
		outW.Close()
		errW.Close()
		return st, err
	}
	if debug {
		fmt.Fprintf(stderr, "lvslab vm: %s\n", strings.Join(cmd.Args, " "))
	}
	cmd.ExtraFiles = []*os.File{outW, errW} // fds 3 and 4
	// qemu's own messages: kept apart from the command's output, shown
	// when the VM fails.
	var qemuOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	// No qemu outlives its caller.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return st, fmt.Errorf("start qemu: %w", err)
	}
	copied := make(chan struct{}, 2)
	go func() { io.Copy(stdout, outR); copied <- struct{}{} }()
	go func() { io.Copy(stderr, errR); copied <- struct{}{} }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	started := func() bool { _, err := os.Stat(filepath.Join(ctl, startedFile)); return err == nil }
	ran, werr, killed := v.await(ctx, cmd, accel, exited, started)
	<-copied
	<-copied
	return v.outcome(ctl, werr, killed, ran, started(), &qemuOut)
}

// await waits for qemu to exit, and kills it when ctx ends or, under KVM,
// when the guest has not started the command within the boot bound (an
// emulation failure leaves qemu paused): then killed is why, and ran
// what the guest had done.
func (v *MicroVM) await(ctx context.Context, cmd *exec.Cmd, accel string, exited <-chan error, started func() bool) (ran string, werr, killed error) {
	var silent <-chan time.Time
	bound := cmp.Or(v.KVMBootBound, kvmBootBound)
	if accel == KVM {
		silent = time.After(bound)
	}
	for {
		select {
		case werr = <-exited:
			return "", werr, nil
		case <-ctx.Done():
			killed = context.Cause(ctx)
		case <-silent:
			if started() {
				silent = nil
				continue
			}
			killed = fmt.Errorf("%w: no report from /init within %s", errNotStarted, bound)
		}
		ran = runState(cmd.Process.Pid, started())
		cmd.Process.Kill()
		return ran, <-exited, killed
	}
}

// outcome is the run's status from the control directory ctl, or why
// there is none: qemu killed, or the guest ended without one.
func (v *MicroVM) outcome(ctl string, werr, killed error, ran string, started bool, qemuOut *bytes.Buffer) (Status, error) {
	var st Status
	console := filepath.Join(ctl, consoleFile)
	switch {
	case errors.Is(killed, ErrTimeout):
		return st, fmt.Errorf("%w after %s: qemu killed (%s); guest console: %s", ErrTimeout, v.Timeout, ran, consoleTail(console))
	case errors.Is(killed, errNotStarted):
		return st, fmt.Errorf("%w; qemu killed (%s); guest console: %s", killed, qemuTail(qemuOut), consoleTail(console))
	case killed != nil:
		return st, fmt.Errorf("micro-VM: %w: qemu killed", killed)
	}
	status, err := os.ReadFile(filepath.Join(ctl, statusFile))
	if err != nil {
		err = fmt.Errorf("micro-VM ended without an exit status (qemu: %v %s); guest console: %s", werr, qemuTail(qemuOut), consoleTail(console))
		if !started {
			err = fmt.Errorf("%w: %w", errNotStarted, err)
		}
		return st, err
	}
	if err := json.Unmarshal(status, &st); err != nil {
		return st, fmt.Errorf("micro-VM status %q: %w", status, err)
	}
	if st.Error != "" {
		return st, fmt.Errorf("micro-VM init failed: %s", st.Error)
	}
	return st, nil
}

// runState says how far a guest got before its qemu was killed: whether
// /init had started the command, and how much CPU qemu had used (a guest
// that works under TCG uses it; a hung one idles).
func runState(pid int, started bool) string {
	what := "the guest had not started the command"
	if started {
		what = "the guest had started the command"
	}
	if p, err := procfs.NewProc(pid); err == nil {
		if st, err := p.Stat(); err == nil {
			what += fmt.Sprintf(", qemu had used %.1f s of CPU", st.CPUTime())
		}
	}
	return what
}

// qemuTail is the end of qemu's own messages: a KVM failure dumps every
// register, and the first lines say what happened.
func qemuTail(out *bytes.Buffer) string {
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) > 3 {
		lines = append(lines[:3], "...")
	}
	return strings.Join(lines, " ")
}

// Start boots the VM in the background with ctl as its control directory
// and returns qemu's process. The command's stdout and stderr go to
// ctl/stdout.log and ctl/stderr.log; AgentPorts further virtio-serial
// ports, AgentPort(i) in the guest, are unix sockets AgentSocket(i) in ctl
// on the host: one client each at a time. qemu runs in a session of its
// own and outlives the caller: stop it through the agent, or kill it.
func (v *MicroVM) Start(ctl string, spec Spec) (*os.Process, error) {
	cmd, err := v.command(ctl, cmp.Or(v.Accel.Name, TCG), spec, filepath.Join(ctl, "stdout.log"), filepath.Join(ctl, "stderr.log"))
	if err != nil {
		return nil, err
	}
	for i := range AgentPorts {
		id := fmt.Sprintf("agent%d", i)
		cmd.Args = append(cmd.Args,
			"-chardev", "socket,id="+id+",path="+filepath.Join(ctl, AgentSocket(i))+",server=on,wait=off",
			"-device", "virtserialport,chardev="+id+",name="+AgentPort(i))
	}
	log, err := os.Create(filepath.Join(ctl, "qemu.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	return cmd.Process, nil
}

// AgentPorts is how many requests the agent serves at once (watch beside
// status and exec): one per port, see Start.
const AgentPorts = 4

// AgentPort is the guest's name of agent port i.
func AgentPort(i int) string { return fmt.Sprintf("lvslab.agent%d", i) }

// AgentSocket is the host's socket of agent port i, in the VM's ctl
// directory.
func AgentSocket(i int) string { return fmt.Sprintf("agent%d.sock", i) }

const consoleFile = "console.log"

// command writes the spec and the initramfs into ctl and returns the qemu
// command; the guest's stdout and stderr go to the files out and errOut.
func (v *MicroVM) command(ctl, accel string, spec Spec, out, errOut string) (*exec.Cmd, error) {
	qemu, err := QEMU()
	if err != nil {
		return nil, err
	}
	spec.KernelVersion = v.Kernel.Version
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(ctl, specFile), data, 0o644); err != nil {
		return nil, err
	}
	initrd := filepath.Join(ctl, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return nil, err
	}
	err = writeInitramfs(f, v.Init, v.Kernel)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write initramfs: %w", err)
	}
	return exec.Command(qemu, v.args(accel, initrd, ctl, out, errOut, spec.Shares)...), nil
}

func (v *MicroVM) args(accel, initrd, ctl, out, errOut string, shares []string) []string {
	mem, cpus := v.MemoryMB, v.CPUs
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = runtime.NumCPU()
	}
	accelOpt, cpu := "tcg,thread=multi", "max"
	if accel == KVM {
		accelOpt, cpu = "kvm", "host"
	}
	a := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "q35", "-accel", accelOpt, "-cpu", cpu,
		"-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-kernel", v.Kernel.Vmlinuz, "-initrd", initrd,
		"-append", cmp.Or(v.BootArgs, bootArgs),
		"-serial", "file:" + filepath.Join(ctl, consoleFile),
		"-device", "virtio-serial-pci",
		"-chardev", "file,id=out,path=" + out + ",append=on",
		"-device", "virtserialport,chardev=out,name=" + portOut,
		"-chardev", "file,id=err,path=" + errOut + ",append=on",
		"-device", "virtserialport,chardev=err,name=" + portErr,
	}
	a = append(a, virtfs("/", tagRoot, true)...)
	a = append(a, virtfs(v.Kernel.Modules, tagModules, true)...)
	a = append(a, virtfs(ctl, tagCtl, false)...)
	for i, s := range shares {
		a = append(a, virtfs(s, shareTag(i), false)...)
	}
	return a
}

// bootArgs: the console on ttyS0 (a file on the host), and no time spent on
// what a throwaway VM does not need: clocksource watchdogs, timer checks,
// crypto self-tests, CPU mitigations, audit, extra UARTs. Measured under
// TCG: 3.6 s -> 3.0 s wall for `vm run -- true`.
const bootArgs = "console=ttyS0 quiet panic=-1 rdinit=/init random.trust_cpu=on " +
	"tsc=reliable no_timer_check nowatchdog cryptomgr.notests mitigations=off audit=0 8250.nr_uarts=1"

func virtfs(path, tag string, ro bool) []string {
	opt := "local,path=" + path + ",mount_tag=" + tag + ",security_model=none,multidevs=remap"
	if ro {
		opt += ",readonly=on"
	}
	return []string{"-virtfs", opt}
}

// consoleTail is the end of the guest's console log, for errors.
func consoleTail(path string) string { return runenv.LogTail(path, 8) }
