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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab"
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
}

// ErrTimeout is returned when a micro-VM run hits its Timeout.
var ErrTimeout = errors.New("micro-VM timed out")

// KVMUsable reports whether /dev/kvm can be opened for hardware
// virtualisation; otherwise qemu emulates the CPU (TCG).
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

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
// timings. Cancelling ctx (Ctrl-C) or the Timeout kills qemu.
func (v *MicroVM) Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) (Status, error) {
	var st Status
	if v.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, v.Timeout, ErrTimeout)
		defer cancel()
	}
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
	cmd, err := v.command(ctl, spec, "/proc/self/fd/3", "/proc/self/fd/4")
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
	var werr error
	killed := false
	select {
	case werr = <-exited:
	case <-ctx.Done():
		cmd.Process.Kill()
		werr, killed = <-exited, true
	}
	<-copied
	<-copied
	console := filepath.Join(ctl, consoleFile)
	switch {
	case killed && errors.Is(context.Cause(ctx), ErrTimeout):
		return st, fmt.Errorf("%w after %s: qemu killed; guest console: %s", ErrTimeout, v.Timeout, consoleTail(console))
	case killed:
		return st, fmt.Errorf("micro-VM: %w: qemu killed", context.Cause(ctx))
	}
	status, err := os.ReadFile(filepath.Join(ctl, statusFile))
	if err != nil {
		return st, fmt.Errorf("micro-VM ended without an exit status (qemu: %v %s); guest console: %s", werr, strings.TrimSpace(qemuOut.String()), consoleTail(console))
	}
	if err := json.Unmarshal(status, &st); err != nil {
		return st, fmt.Errorf("micro-VM status %q: %w", status, err)
	}
	if st.Error != "" {
		return st, fmt.Errorf("micro-VM init failed: %s", st.Error)
	}
	return st, nil
}

// Start boots the VM in the background with ctl as its control directory
// and returns qemu's process. The command's stdout and stderr go to
// ctl/stdout.log and ctl/stderr.log; a further virtio-serial port named
// AgentPort is a unix socket at ctl/agent.sock on the host. qemu runs in a
// session of its own and outlives the caller: stop it through the agent,
// or kill it.
func (v *MicroVM) Start(ctl string, spec Spec) (*os.Process, error) {
	cmd, err := v.command(ctl, spec, filepath.Join(ctl, "stdout.log"), filepath.Join(ctl, "stderr.log"))
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(ctl, AgentSocket)
	cmd.Args = append(cmd.Args,
		"-chardev", "socket,id=agent,path="+sock+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name="+AgentPort)
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

// Agent port: see Start.
const (
	AgentPort   = "lvslab.agent"
	AgentSocket = "agent.sock"
	consoleFile = "console.log"
)

// command writes the spec and the initramfs into ctl and returns the qemu
// command; the guest's stdout and stderr go to the files out and errOut.
func (v *MicroVM) command(ctl string, spec Spec, out, errOut string) (*exec.Cmd, error) {
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
	err = WriteInitramfs(f, v.Init, v.Kernel)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write initramfs: %w", err)
	}
	return exec.Command(qemu, v.args(initrd, ctl, out, errOut, spec.Shares)...), nil
}

func (v *MicroVM) args(initrd, ctl, out, errOut string, shares []string) []string {
	mem, cpus := v.MemoryMB, v.CPUs
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = runtime.NumCPU()
	}
	accel, cpu := "tcg,thread=multi", "max"
	if KVMUsable() {
		accel, cpu = "kvm", "host"
	}
	a := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "q35", "-accel", accel, "-cpu", cpu,
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
func consoleTail(path string) string { return lab.LogTail(path, 8) }
