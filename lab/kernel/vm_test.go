package kernel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab/runenv"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/lab/labtest"
)

// initDir holds the static lvslab that every VM of these tests boots as
// /init, built once (staticLvslab) and removed by TestMain.
var initDir string

var staticLvslab = sync.OnceValues(func() (string, error) {
	var err error
	if initDir, err = os.MkdirTemp("", "lvslab-init-"); err != nil {
		return "", err
	}
	init := filepath.Join(initDir, "lvslab")
	build := exec.Command("go", "build", "-o", init, "../../cmd/lvslab")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build lvslab: %w\n%s", err, out)
	}
	return init, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if initDir != "" {
		os.RemoveAll(initDir)
	}
	os.Exit(code)
}

// requireVM skips unless a micro-VM can boot here: root, qemu, and not
// already inside one (nested TCG would take minutes).
func requireVM(t testing.TB) *kernel.MicroVM {
	t.Helper()
	labtest.RequireRoot(t)
	if os.Getenv(runenv.InVM) != "" {
		t.Skip("already inside a micro-VM")
	}
	if _, err := kernel.QEMU(); err != nil {
		labtest.Missing(t, err.Error())
	}
	init, err := staticLvslab()
	if err != nil {
		t.Fatal(err)
	}
	k, err := kernel.Find(context.Background(), os.Stderr)
	if err != nil {
		t.Fatalf("kernel: %v", err)
	}
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "lvslab-vm-*"))
	t.Cleanup(func() { expectNoQEMU(t, before) })
	// A ceiling, not an expectation: a run takes 3 to 5 s alone, and beside
	// make test's other packages on two TCG cores it took over a minute
	// once (its guest console empty: a timeout now says how far the guest
	// got and how much CPU qemu had used).
	return &kernel.MicroVM{Kernel: k, Init: init, MemoryMB: 512, Timeout: 3 * time.Minute}
}

// expectNoQEMU fails if a qemu of ours or a new control directory survives.
func expectNoQEMU(t testing.TB, before []string) {
	t.Helper()
	// Our qemus are our children; other runs' qemus are not ours to judge.
	for _, p := range lab.ProcessesMentioning("mount_tag=hostroot") {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
		// Field 4 of /proc/PID/stat, after the ")" that ends the name.
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			t.Errorf("leak: qemu still running: %s", p)
		}
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "lvslab-vm-*"))
	for _, d := range after {
		if !slices.Contains(before, d) {
			t.Errorf("leak: control directory %s", d)
		}
	}
}

func run(t *testing.T, vm *kernel.MicroVM, argv ...string) (string, string, int, error) {
	t.Helper()
	var out, errb bytes.Buffer
	wd, _ := os.Getwd()
	st, err := vm.Run(context.Background(), kernel.Spec{Argv: argv, Env: os.Environ(), Dir: wd}, &out, &errb)
	return out.String(), errb.String(), st.Code, err
}

func TestVMRunIPVSExitCodesAndOutput(t *testing.T) {
	vm := requireVM(t)
	// The acceptance check: an empty IPVS table, exit 0.
	out, stderr, code, err := run(t, vm, "ipvsadm", "-Ln")
	if err != nil || code != 0 || !strings.Contains(out, "IP Virtual Server version") {
		t.Fatalf("ipvsadm -Ln: code %d, err %v, stdout %q, stderr %q; want exit 0 and the IPVS table header", code, err, out, stderr)
	}
	if strings.Count(out, "\n") != 3 {
		t.Errorf("ipvsadm -Ln: got %q, want the 3 header lines of an empty table", out)
	}
	// Exit code, stdout and stderr apart, working directory, environment.
	t.Setenv("LVSLAB_TEST_VALUE", "42")
	out, stderr, code, err = run(t, vm, "sh", "-c", `echo "out $LVSLAB_TEST_VALUE $(pwd) $(uname -r)"; echo err >&2; exit 7`)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := "out 42 " + wd + " " + vm.Kernel.Version + "\n"; out != want || stderr != "err\n" || code != 7 {
		t.Errorf("got stdout %q, stderr %q, code %d; want %q, \"err\\n\", 7", out, stderr, code, want)
	}
}

func TestVMRunTimeout(t *testing.T) {
	vm := requireVM(t)
	vm.Timeout = 2 * time.Second
	start := time.Now()
	_, _, _, err := run(t, vm, "sleep", "600")
	if !errors.Is(err, kernel.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	// The evidence of a hang or of slowness: how far the guest got.
	if !strings.Contains(err.Error(), "started the command, qemu had used") {
		t.Errorf("the timeout says nothing of how far the guest got: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("timeout of 2s returned after %s", d)
	}
}

// TestFindUsesCache proves a second run downloads nothing: with the cache
// filled, Find must not even ask apt (PATH is empty).
func TestFindUsesCache(t *testing.T) {
	requireVM(t) // fills the cache
	t.Setenv("PATH", "")
	var progress bytes.Buffer
	k, err := kernel.Find(context.Background(), &progress)
	if err != nil || progress.Len() > 0 {
		t.Fatalf("Find with a filled cache: %v, progress %q; want the cached kernel and no download", err, progress.String())
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		t.Errorf("cached kernel image: %v", err)
	}
}

// TestVMRunStreamsLive: output reaches the caller while the command still
// runs, not when the VM ends.
func TestVMRunStreamsLive(t *testing.T) {
	vm := requireVM(t)
	w := &firstWrite{}
	wd, _ := os.Getwd()
	st, err := vm.Run(context.Background(), kernel.Spec{Argv: []string{"sh", "-c", "echo early; sleep 3; echo late"}, Env: os.Environ(), Dir: wd}, w, io.Discard)
	end := time.Now()
	if err != nil || st.Code != 0 {
		t.Fatalf("run: %v (exit %d)", err, st.Code)
	}
	if w.at.IsZero() || end.Sub(w.at) < 2*time.Second {
		t.Errorf("first output %s before the end, want it at least 2s before (the command sleeps 3s after it)", end.Sub(w.at))
	}
	if w.buf.String() != "early\nlate\n" {
		t.Errorf("got %q, want \"early\\nlate\\n\"", w.buf.String())
	}
}

// firstWrite records when its first bytes arrived.
type firstWrite struct {
	at  time.Time
	buf bytes.Buffer
}

func (f *firstWrite) Write(p []byte) (int, error) {
	if f.at.IsZero() {
		f.at = time.Now()
	}
	return f.buf.Write(p)
}

// fakeQEMU puts a qemu-system-x86_64 first on PATH that fails under
// `-accel kvm` as KVM does on a host without vmx/svm (mode "abort": qemu's
// MSR 0x10a assertion; "hang": a guest that never prints), or ("works")
// boots under TCG in KVM's place; without `-accel kvm` it runs the real
// qemu.
func fakeQEMU(t *testing.T, mode string) {
	t.Helper()
	real, err := kernel.QEMU()
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
case " $* " in
*" -accel kvm "*)
	case %s in
	abort)	echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
		kill -ABRT $$ ;;
	hang)	exec sleep 600 ;;
	works)	for a; do shift; case $a in kvm) a=tcg ;; host) a=max ;; esac; set -- "$@" "$a"; done ;;
	esac ;;
esac
exec %s "$@"
`, mode, real)
	if err := os.WriteFile(filepath.Join(dir, "qemu-system-x86_64"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
}

// TestVMRunKVMFallback: a KVM boot that aborts or stays silent is booted
// again under TCG, once, with a warning, and the command runs there.
func TestVMRunKVMFallback(t *testing.T) {
	for _, mode := range []string{"abort", "hang"} {
		t.Run(mode, func(t *testing.T) {
			vm := requireVM(t)
			fakeQEMU(t, mode)
			vm.Accel = kernel.Accel{Name: kernel.KVM, Reason: "test", Fallback: true}
			vm.KVMBootBound = 2 * time.Second // TCG reaches /init in ~3.5 s; the fake KVM never does
			out, stderr, code, err := run(t, vm, "sh", "-c", "echo served; exit 3")
			if err != nil || code != 3 || out != "served\n" {
				t.Fatalf("got stdout %q, code %d, err %v, stderr %q; want the command run once under TCG", out, code, err, stderr)
			}
			if n := strings.Count(stderr, "warning: KVM boot failed, running again under TCG"); n != 1 || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q: want exactly the one-line warning", stderr)
			}
			if mode == "hang" {
				return
			}
			// Chosen by hand, KVM does not fall back: the error says so.
			vm.Accel.Fallback = false
			if _, _, _, err := run(t, vm, "true"); err == nil || !strings.Contains(err.Error(), "try --accel tcg") {
				t.Errorf("--accel kvm on a broken KVM: got %v, want an error suggesting --accel tcg", err)
			}
		})
	}
}

// TestVMRunNoRerunAfterStart: a guest that dies after /init started the
// command is not booted again, under any accelerator.
func TestVMRunNoRerunAfterStart(t *testing.T) {
	vm := requireVM(t)
	fakeQEMU(t, "works")
	vm.Accel = kernel.Accel{Name: kernel.KVM, Reason: "test", Fallback: true}
	// The fake KVM is TCG, which beside make test's other packages on two
	// cores once took over the 10 s a real KVM guest gets to reach /init:
	// the boot bound is not what this test is about.
	vm.KVMBootBound = 2 * time.Minute
	share := t.TempDir()
	marks := filepath.Join(share, "ran")
	var out, stderr bytes.Buffer
	wd, _ := os.Getwd()
	_, err := vm.Run(context.Background(), kernel.Spec{
		Argv: []string{"sh", "-c", "echo ran >> " + marks + "; echo o > /proc/sysrq-trigger; sleep 30"},
		Env:  os.Environ(), Dir: wd, Shares: []string{share},
	}, &out, &stderr)
	if err == nil || !strings.Contains(err.Error(), "without an exit status") {
		t.Errorf("got %v, want the guest's power-off reported as an error", err)
	}
	if data, _ := os.ReadFile(marks); string(data) != "ran\n" || strings.Contains(stderr.String(), "running again") {
		t.Errorf("the command ran %q (stderr %q); want once, and no second boot", data, stderr.String())
	}
}
