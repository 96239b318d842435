package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/spf13/pflag"
)

// vmFlags are the flags of commands that may boot a micro-VM.
type vmFlags struct {
	vmlinuz, modules string
	vmKernel         string
	accel            string
	memory           int
	timeout          time.Duration
	shares           []string
}

func addVMFlags(fs *pflag.FlagSet, withTimeout bool, memory int) *vmFlags {
	v := &vmFlags{}
	fs.StringVar(&v.vmlinuz, "vmlinuz", "", "boot this kernel image instead of the distro's (with --modules)")
	fs.StringVar(&v.vmKernel, "vm-kernel", os.Getenv("LVSLAB_VM_KERNEL"), "boot this cached kernel: a version or the suite it was fetched for (lvslab kernel list; env LVSLAB_VM_KERNEL)")
	fs.StringVar(&v.modules, "modules", "", "module tree of --vmlinuz: a …/lib/modules/<version> directory with modules.dep")
	fs.IntVar(&v.memory, "memory", memory, "guest memory in MiB")
	fs.StringVar(&v.accel, "accel", "", "qemu accelerator: auto, kvm or tcg (default $LVSLAB_ACCEL, else auto: KVM only where a guest boots under it)")
	if withTimeout {
		fs.DurationVar(&v.timeout, "timeout", 30*time.Minute, "kill the VM after this long")
		fs.StringArrayVar(&v.shares, "share", nil, "host directory mounted read-write at the same path in the guest (repeatable)")
	}
	return v
}

// microVM prepares a micro-VM: kernel from the flags or the cache (fetched
// on first use), this executable as /init, the accelerator by evidence.
func (v *vmFlags) microVM(ctx context.Context) (*kernel.MicroVM, error) {
	if _, err := kernel.QEMU(); err != nil {
		return nil, err
	}
	var k *kernel.Kernel
	var err error
	if v.vmlinuz != "" || v.modules != "" {
		if v.vmlinuz == "" || v.modules == "" {
			return nil, usageError("--vmlinuz and --modules go together")
		}
		k, err = kernel.Local(v.vmlinuz, v.modules)
	} else if v.vmKernel != "" {
		k, err = kernel.Lookup(v.vmKernel)
	} else {
		k, err = kernel.Find(ctx, os.Stderr)
	}
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	vm := &kernel.MicroVM{Kernel: k, Init: self, MemoryMB: v.memory, Timeout: v.timeout}
	if vm.Accel, err = kernel.ChooseAccel(ctx, v.accel, vm.ProbeKVM); err != nil {
		return nil, err
	}
	return vm, nil
}

// runInVM runs argv in a micro-VM with this process's working directory
// and environment and returns its exit code.
func (v *vmFlags) runInVM(argv []string) (int, error) {
	if os.Geteuid() != 0 {
		return 0, fmt.Errorf("the micro-VM runs the lab as root inside: run lvslab as root")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	vm, err := v.microVM(ctx)
	if err != nil {
		return 0, err
	}
	dir, _ := os.Getwd()
	st, err := vm.Run(ctx, kernel.Spec{Argv: argv, Env: os.Environ(), Dir: dir, Shares: v.shares}, os.Stdout, os.Stderr)
	return st.Code, err
}

func cmdVM(args []string) error {
	fs := newFlags("vm")
	v := addVMFlags(fs, true, 2048)
	if _, err := parseVerb(fs, args, "run"); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("want: lvslab vm run [flags] -- CMD [ARG...]")
	}
	code, err := v.runInVM(fs.Args())
	if err != nil {
		return err
	}
	return exitCode(code)
}

// exitCode makes lvslab exit with code without printing anything.
func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}
