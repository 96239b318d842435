package kernel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/lab/runenv"
	"golang.org/x/sys/unix"
)

// Accelerators for qemu's -accel, and Auto: decide by evidence.
const (
	KVM  = "kvm"
	TCG  = "tcg"
	Auto = "auto"
)

// AccelEnv overrides the accelerator when --accel is not given.
const AccelEnv = "LVSLAB_ACCEL"

// Accel is the accelerator a micro-VM boots with, and why.
type Accel struct {
	Name   string `json:"accel"`  // KVM or TCG
	Reason string `json:"reason"` // one line
	// Fallback: a KVM boot whose guest never reports is retried once under
	// TCG. Only an automatic choice falls back; --accel kvm fails instead.
	Fallback bool      `json:"-"`
	Probed   time.Time `json:"probed"` // when the boot probe ran; zero without one
}

func (a Accel) String() string { return a.Name + " (" + a.Reason + ")" }

// kvmBootBound is how long a KVM guest may take to reach /init and report
// (the boot probe's limit, and the fallback's). A KVM micro-VM reaches
// userspace in well under a second; TCG needs ~3.5 s of guest time.
const kvmBootBound = 10 * time.Second

// Evidence is what the host says about KVM before anything boots.
type Evidence struct {
	DevKVM     error // opening /dev/kvm read-write
	APIVersion int   // KVM_GET_API_VERSION; 12 since Linux 2.6.22
	cPUFlags   []string
}

// kvmAPIVersion is the only KVM API version Linux has ever shipped.
const kvmAPIVersion = 12

// gatherEvidence reads /dev/kvm and /proc/cpuinfo.
func gatherEvidence() Evidence {
	var ev Evidence
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		ev.cPUFlags = cPUFlags(cpuinfo)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		ev.DevKVM = err
		return ev
	}
	defer f.Close()
	// KVM_GET_API_VERSION is _IO(0xAE, 0x00).
	v, err := unix.IoctlRetInt(int(f.Fd()), 0xAE00)
	if err != nil {
		ev.DevKVM = fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	ev.APIVersion = v
	return ev
}

// cPUFlags returns the flags of the first processor in /proc/cpuinfo.
func cPUFlags(cpuinfo []byte) []string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "flags" {
			return strings.Fields(v)
		}
	}
	return nil
}

// staticAccel decides what the evidence alone can: TCG with the reason,
// or "" when KVM looks possible and only a boot can tell.
func staticAccel(ev Evidence) (name, reason string) {
	switch {
	case ev.DevKVM != nil:
		return TCG, "/dev/kvm: " + ev.DevKVM.Error()
	case ev.APIVersion != kvmAPIVersion:
		return TCG, fmt.Sprintf("/dev/kvm answers KVM API version %d, want %d", ev.APIVersion, kvmAPIVersion)
	case !slices.Contains(ev.cPUFlags, "vmx") && !slices.Contains(ev.cPUFlags, "svm"):
		// A /dev/kvm that opens on a CPU without vmx/svm (a VM without
		// nested virtualisation) cannot run a guest: qemu aborts on MSR
		// 0x10a, or KVM reports an emulation failure and the guest hangs.
		return TCG, "/dev/kvm opens, but the CPU flags have no vmx or svm (no nested virtualisation)"
	}
	return "", ""
}

// ChooseAccel decides the accelerator. requested is kvm, tcg, auto, or ""
// for $LVSLAB_ACCEL and then auto. Auto takes KVM only on evidence: /dev/kvm
// opens with API version 12, the CPU has vmx or svm, and a guest booted
// under KVM reached /init and reported within kvmBootBound. probe boots
// that guest; its outcome is cached per host kernel, qemu version and CPU
// flags. A nil probe leaves an undecided KVM pending (kernel info without
// a kernel).
func ChooseAccel(ctx context.Context, requested string, probe func(context.Context) error) (Accel, error) {
	source := "--accel"
	if requested == "" {
		requested, source = os.Getenv(AccelEnv), AccelEnv
	}
	switch requested {
	case KVM, TCG:
		return Accel{Name: requested, Reason: source + "=" + requested}, nil
	case Auto, "":
	default:
		return Accel{}, fmt.Errorf("%s=%q: want auto, kvm or tcg", source, requested)
	}
	return autoAccel(ctx, gatherEvidence(), probe)
}

// autoAccel is ChooseAccel's automatic choice on the given evidence.
func autoAccel(ctx context.Context, ev Evidence, probe func(context.Context) error) (Accel, error) {
	if name, reason := staticAccel(ev); name != "" {
		return Accel{Name: name, Reason: reason}, nil
	}
	cache := accelCachePath(ev)
	if a, ok := readAccelCache(cache); ok {
		a.Reason += fmt.Sprintf(" (boot probe of %s, cached in %s)", a.Probed.Format(time.DateOnly), cache)
		a.Fallback = true
		return a, nil
	}
	if probe == nil {
		return Accel{Name: KVM, Reason: "/dev/kvm and the CPU allow KVM; a boot probe decides at the first micro-VM run", Fallback: true}, nil
	}
	a := Accel{Probed: time.Now().UTC()}
	start := time.Now()
	if err := probe(ctx); err != nil {
		if ctx.Err() != nil {
			return a, ctx.Err()
		}
		a.Name, a.Reason = TCG, "a guest booted under KVM did not report: "+firstLine(err.Error())
	} else {
		a.Name, a.Reason = KVM, fmt.Sprintf("a guest booted under KVM and reported in %.1f s", time.Since(start).Seconds())
	}
	if err := writeAccelCache(cache, a); err != nil {
		return a, err
	}
	a.Fallback = true
	return a, nil
}

// accelCachePath names the cached probe outcome for this host: its kernel,
// qemu's version and the CPU flags.
func accelCachePath(ev Evidence) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", Release(), qemuVersion(), strings.Join(ev.cPUFlags, " "))
	return filepath.Join(runenv.CacheDir(), "accel", hex.EncodeToString(h.Sum(nil))[:16]+".json")
}

func qemuVersion() string {
	qemu, err := QEMU()
	if err != nil {
		return ""
	}
	out, _ := exec.Command(qemu, "--version").Output()
	return firstLine(string(out))
}

func readAccelCache(path string) (Accel, bool) {
	var a Accel
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &a) != nil || (a.Name != KVM && a.Name != TCG) {
		return Accel{}, false
	}
	return a, true
}

func writeAccelCache(path string, a Accel) error {
	data, _ := json.MarshalIndent(a, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("cache the accelerator probe: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("cache the accelerator probe: %w", err)
	}
	return nil
}

// ProbeKVM boots v's kernel under KVM with `true` as the command; it must
// reach /init and report within kvmBootBound.
func (v *MicroVM) ProbeKVM(ctx context.Context) error {
	probe := *v
	probe.Accel, probe.MemoryMB, probe.Timeout = Accel{Name: KVM, Reason: "boot probe"}, 256, kvmBootBound
	st, err := probe.Run(ctx, Spec{Argv: []string{"true"}, Dir: "/"}, io.Discard, io.Discard)
	if err == nil && st.Code != 0 {
		err = fmt.Errorf("true exited %d", st.Code)
	}
	return err
}

// errNotStarted: a KVM guest died or stayed silent before its /init
// started the command, so the same command may run again under TCG.
var errNotStarted = errors.New("the guest never started the command")

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
