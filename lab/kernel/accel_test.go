package kernel

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestCPUFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cpuinfo string
		virt    bool
	}{
		{"intel with vmx", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse vmx sse2 hypervisor\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: fpu\n", true},
		{"amd with svm", "processor\t: 0\nflags\t\t: fpu svm lm\n", true},
		{"a guest without nested virtualisation", "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor\n", false},
		{"no flags line", "processor\t: 0\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := cPUFlags([]byte(tc.cpuinfo))
			ev := Evidence{APIVersion: kvmAPIVersion, cPUFlags: flags}
			name, reason := staticAccel(ev)
			if got := name == ""; got != tc.virt {
				t.Errorf("flags %v: static choice %q (%s); want KVM left to the boot probe: %v", flags, name, reason, tc.virt)
			}
		})
	}
}

func TestStaticAccel(t *testing.T) {
	vmx := []string{"fpu", "vmx"}
	for _, tc := range []struct {
		name string
		ev   Evidence
		want string // "" for undecided: a boot probe decides
		why  string
	}{
		{"no /dev/kvm", Evidence{DevKVM: os.ErrNotExist, cPUFlags: vmx}, TCG, "/dev/kvm: file does not exist"},
		{"old API", Evidence{APIVersion: 11, cPUFlags: vmx}, TCG, "API version 11"},
		{"opens without vmx", Evidence{APIVersion: 12, cPUFlags: []string{"fpu"}}, TCG, "no vmx or svm"},
		{"everything says yes", Evidence{APIVersion: 12, cPUFlags: vmx}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, why := staticAccel(tc.ev)
			if name != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("got %q (%s), want %q with %q", name, why, tc.want, tc.why)
			}
		})
	}
}

func TestChooseAccelRequested(t *testing.T) {
	t.Setenv(AccelEnv, "tcg")
	if a, err := ChooseAccel(context.Background(), "kvm", nil); err != nil || a.Name != KVM || a.Fallback || a.Reason != "--accel=kvm" {
		t.Errorf("--accel kvm: got %+v, %v; want kvm without fallback, reason --accel=kvm", a, err)
	}
	if a, err := ChooseAccel(context.Background(), "", nil); err != nil || a.Name != TCG || a.Reason != AccelEnv+"=tcg" {
		t.Errorf("LVSLAB_ACCEL=tcg: got %+v, %v", a, err)
	}
	if _, err := ChooseAccel(context.Background(), "hvf", nil); err == nil || !strings.Contains(err.Error(), "want auto, kvm or tcg") {
		t.Errorf("--accel hvf: got %v, want an error naming the choices", err)
	}
}

// TestAutoAccelProbeCached: where the evidence allows KVM, a boot probe
// decides, its outcome is cached with the reason, and the next choice does
// not boot again.
func TestAutoAccelProbeCached(t *testing.T) {
	ev := Evidence{APIVersion: kvmAPIVersion, cPUFlags: []string{"svm"}}
	for _, tc := range []struct {
		name  string
		probe error
		want  string
	}{
		{"probe boots", nil, KVM},
		{"probe aborts", errors.New("micro-VM ended without an exit status (qemu: signal: aborted qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n...)"), TCG},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LVSLAB_CACHE", t.TempDir())
			probes := 0
			probe := func(context.Context) error { probes++; return tc.probe }
			a, err := autoAccel(context.Background(), ev, probe)
			if err != nil || a.Name != tc.want || !a.Fallback || a.Probed.IsZero() {
				t.Fatalf("first choice: got %+v, %v; want %s from a probe, with fallback", a, err, tc.want)
			}
			if tc.probe != nil && !strings.Contains(a.Reason, "failed to set MSR 0x10a") {
				t.Errorf("reason %q does not say why the probe failed", a.Reason)
			}
			b, err := autoAccel(context.Background(), ev, probe)
			if err != nil || b.Name != tc.want || probes != 1 || !strings.Contains(b.Reason, "cached in") {
				t.Errorf("second choice: got %+v, %v after %d probes; want %s from the cache, one probe in all", b, err, probes, tc.want)
			}
			other := Evidence{APIVersion: kvmAPIVersion, cPUFlags: []string{"vmx", "ept"}}
			if _, err := autoAccel(context.Background(), other, probe); err != nil || probes != 2 {
				t.Errorf("other CPU flags: %v after %d probes; want a probe of their own", err, probes)
			}
		})
	}
}
