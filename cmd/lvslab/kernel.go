package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/lvslab/lvslab/lab/kernel"
)

func cmdKernel(args []string) error {
	fs := newFlags("kernel")
	mode := fs.String("kernel", "", "runner to report on: native or vm (default $LVSLAB_KERNEL, else automatic)")
	accel := fs.String("accel", "", "accelerator to report on: auto, kvm or tcg (default $LVSLAB_ACCEL, else auto)")
	suite := fs.String("suite", "", "fetch: the current kernel of this Debian suite (bullseye, bookworm, bookworm-backports, trixie), cached beside the others; default: the distro's, which becomes the default")
	verb, err := parseVerb(fs, args, "info", "fetch", "list")
	if err != nil {
		return err
	}
	switch verb {
	case "info":
		info, err := kernel.Detect(*mode)
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "host kernel:\t%s\n", info.HostKernel)
		fmt.Fprintf(w, "root:\t%s\n", yesNo(info.Root, ""))
		fmt.Fprintf(w, "ip_vs:\t%s\n", yesNo(info.IPVS, info.IPVSWhy))
		fmt.Fprintf(w, "qemu:\t%s\n", orNone(info.QEMU, "not found: install qemu-system-x86 (make deps)"))
		a, aerr := kernel.ChooseAccel(context.Background(), *accel, probe(info))
		if aerr != nil {
			fmt.Fprintf(w, "accel:\t%v\n", aerr)
		} else {
			fmt.Fprintf(w, "accel:\t%s\n", a)
		}
		if k := info.Cached; k != nil {
			fmt.Fprintf(w, "cached kernel:\t%s (%s)\n", k.Version, k.Vmlinuz)
		} else {
			fmt.Fprintf(w, "cached kernel:\tnone (lvslab kernel fetch, or the first VM run, downloads one)\n")
		}
		fmt.Fprintf(w, "runner:\t%s (%s)\n", info.Mode, info.Reason)
		w.Flush()
		return errors.Join(err, aerr)
	case "fetch":
		fetch := kernel.Fetch
		if *suite != "" {
			fetch = func(ctx context.Context, w io.Writer) (*kernel.Kernel, error) {
				return kernel.FetchSuite(ctx, *suite, w)
			}
		}
		k, err := fetch(context.Background(), os.Stderr)
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%s\t%s\n", k.Version, k.Vmlinuz, k.Modules)
	case "list":
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "VERSION\tSUITES\tDEFAULT\tIMAGE\n")
		for _, l := range kernel.List() {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", l.Version, orNone(strings.Join(l.Suites, ","), "-"), yesNo(l.Default, ""), l.Vmlinuz)
		}
		w.Flush()
	}
	return nil
}

// probe boots the cached kernel under KVM for ChooseAccel; nil (leave KVM
// undecided) when no kernel is cached, qemu is missing or not root.
func probe(info kernel.Info) func(context.Context) error {
	self, err := os.Executable()
	if info.Cached == nil || info.QEMU == "" || !info.Root || err != nil {
		return nil
	}
	return (&kernel.MicroVM{Kernel: info.Cached, Init: self}).ProbeKVM
}

func yesNo(ok bool, why string) string {
	if ok {
		if why != "" {
			return "yes (" + why + ")"
		}
		return "yes"
	}
	if why != "" {
		return "no (" + why + ")"
	}
	return "no"
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// cmdKexec is a `go test -exec` wrapper: it runs a test binary where IPVS
// exists, natively or in a micro-VM, and exits with its code.
func cmdKexec(args []string) error {
	fs := newFlags("kexec")
	mode := fs.String("kernel", "", "native or vm (default $LVSLAB_KERNEL, else automatic)")
	v := addVMFlags(fs, true, 2048)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("want: lvslab kexec [flags] BINARY [ARG...]")
	}
	info, err := kernel.Detect(*mode)
	if err != nil {
		return err
	}
	argv := fs.Args()
	if info.Mode == kernel.Native {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			return err
		}
		return syscall.Exec(path, argv, os.Environ())
	}
	code, err := v.runInVM(argv)
	if err != nil {
		return err
	}
	return exitCode(code)
}
