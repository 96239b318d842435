package kernel

import (
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
	// Progress gets a line on boot problems; nil discards.
	Progress io.Writer
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
// the given writers, and returns the command's exit code. Cancelling ctx
// (Ctrl-C) or the Timeout kills qemu.
func (v *MicroVM) Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) (int, error) {
	qemu, err := QEMU()
	if err != nil {
		return 0, err
	}
	if v.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, v.Timeout, ErrTimeout)
		defer cancel()
	}
	ctl, err := os.MkdirTemp("", "lvslab-vm-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(ctl)
	spec.KernelVersion = v.Kernel.Version
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(ctl, specFile), data, 0o644); err != nil {
		return 0, err
	}
	initrd := filepath.Join(ctl, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return 0, err
	}
	err = WriteInitramfs(f, v.Init, v.Kernel)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write initramfs: %w", err)
	}

	// qemu writes the command's output into pipes (virtio-serial ports
	// backed by file chardevs on /proc/self/fd/N); we copy them out.
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	console := filepath.Join(ctl, "console.log")
	cmd := exec.Command(qemu, v.args(initrd, ctl, console, spec.Shares)...)
	cmd.ExtraFiles = []*os.File{outW, errW} // fds 3 and 4
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// No qemu outlives its caller.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		outW.Close()
		errW.Close()
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	outW.Close()
	errW.Close()
	copied := make(chan struct{}, 2)
	go func() { io.Copy(stdout, outR); copied <- struct{}{} }()
	go func() { io.Copy(stderr, errR); copied <- struct{}{} }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-exited:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-exited
		<-copied
		<-copied
		if errors.Is(context.Cause(ctx), ErrTimeout) {
			return 0, fmt.Errorf("%w after %s: qemu killed", ErrTimeout, v.Timeout)
		}
		return 0, fmt.Errorf("micro-VM: %w: qemu killed", context.Cause(ctx))
	}
	<-copied
	<-copied
	status, err := os.ReadFile(filepath.Join(ctl, statusFile))
	if err != nil {
		return 0, fmt.Errorf("micro-VM ended without an exit status (qemu: %v); guest console: %s", werr, consoleTail(console))
	}
	lines := strings.SplitN(strings.TrimSpace(string(status)), "\n", 2)
	code, _ := strconv.Atoi(lines[0])
	if code == exitInitFailed && len(lines) > 1 {
		return code, fmt.Errorf("micro-VM init failed: %s", lines[1])
	}
	return code, nil
}

func (v *MicroVM) args(initrd, ctl, console string, shares []string) []string {
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
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init random.trust_cpu=on",
		"-serial", "file:" + console,
		"-device", "virtio-serial-pci",
		"-chardev", "file,id=out,path=/proc/self/fd/3,append=on",
		"-device", "virtserialport,chardev=out,name=" + portOut,
		"-chardev", "file,id=err,path=/proc/self/fd/4,append=on",
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

func virtfs(path, tag string, ro bool) []string {
	opt := "local,path=" + path + ",mount_tag=" + tag + ",security_model=none,multidevs=remap"
	if ro {
		opt += ",readonly=on"
	}
	return []string{"-virtfs", opt}
}

func consoleTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(data))) == 0 {
		return "(empty)"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, " | ")
}
