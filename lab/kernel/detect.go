package kernel

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/lvslab/lvslab/lab/runenv"

	"golang.org/x/sys/unix"
)

// Runner modes.
const (
	Native = "native" // the host kernel has ip_vs: run directly
	VM     = "vm"     // boot a micro-VM with a distro kernel
)

// Info is what decides where IPVS work runs, for `lvslab kernel info`.
type Info struct {
	HostKernel string
	Root       bool
	// IPVS says whether the host kernel has ip_vs; IPVSWhy explains.
	IPVS    bool
	IPVSWhy string
	QEMU    string // path, "" when missing
	Cached  *Kernel
	// Mode is the runner that would run, and Reason why.
	Mode, Reason string
}

// HostHasIPVS reports whether the running kernel has ip_vs, loaded or as
// a module modprobe can load, with the reason. It changes nothing (unit
// tests and `lvslab kernel info` call it); LoadIPVS loads the module.
func HostHasIPVS() (bool, string) {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		return true, "/proc/net/ip_vs exists"
	}
	dir := filepath.Join("/lib/modules", Release())
	for _, index := range []string{"modules.builtin", "modules.dep"} {
		data, err := os.ReadFile(filepath.Join(dir, index))
		if err == nil && regexp.MustCompile(`(?m)^kernel/net/netfilter/ipvs/ip_vs\.ko`).Match(data) {
			return true, "ip_vs is a module of this kernel (" + index + "); loaded when used"
		}
	}
	return false, "no /proc/net/ip_vs, and no ip_vs in " + dir + "/modules.dep"
}

// LoadIPVS loads ip_vs where HostHasIPVS found it as a module: for native
// runs, before anything uses IPVS.
func LoadIPVS() error {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		return nil
	}
	if out, err := exec.Command("modprobe", "ip_vs").CombinedOutput(); err != nil {
		return fmt.Errorf("modprobe ip_vs: %v: %s", err, lastLine(strings.TrimSpace(string(out))))
	}
	return nil
}

// ErrNoIPVS is returned when native mode is asked for without ip_vs.
var ErrNoIPVS = errors.New("the host kernel has no ip_vs")

// Detect decides where IPVS work runs. requested is "native", "vm", or ""
// for $LVSLAB_KERNEL and then automatic: native if the host has ip_vs.
func Detect(requested string) (Info, error) {
	info := Info{HostKernel: Release(), Root: os.Geteuid() == 0, Cached: Cached()}
	info.QEMU, _ = exec.LookPath("qemu-system-x86_64")
	info.IPVS, info.IPVSWhy = HostHasIPVS()
	source := "--kernel"
	if requested == "" {
		requested, source = os.Getenv("LVSLAB_KERNEL"), "LVSLAB_KERNEL"
	}
	switch requested {
	case Native:
		info.Mode, info.Reason = Native, source+"="+Native
		if !info.IPVS {
			return info, fmt.Errorf("%s=native: %w (%s): use vm", source, ErrNoIPVS, info.IPVSWhy)
		}
	case VM:
		info.Mode, info.Reason = VM, source+"="+VM
	case "":
		if info.IPVS {
			info.Mode, info.Reason = Native, "the host kernel has ip_vs"
		} else {
			info.Mode, info.Reason = VM, "the host kernel has no ip_vs"
		}
	default:
		return info, fmt.Errorf("%s=%q: want native or vm", source, requested)
	}
	return info, nil
}

// CurrentRunner is the runner this process is under: VM inside the
// micro-VM, else Native.
func CurrentRunner() string {
	if runenv.InMicroVM() {
		return VM
	}
	return Native
}

// Release is the running kernel's release, as uname -r prints it.
func Release() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}
