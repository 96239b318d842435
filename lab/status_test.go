package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// KernelThreadStacks lists the processes of a name, each with its state:
// here a sleeping copy of sleep(1) under a name of its own.
func TestKernelThreadStacks(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "lvslabzzsleep")
	if err := os.WriteFile(name, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if got := KernelThreadStacks("lvslab-none-"); got != "no lvslab-none-* kernel thread" {
		t.Errorf("no such thread: %q", got)
	}
	want := fmt.Sprintf("%d lvslabzzsleep ", cmd.Process.Pid)
	for range 100 { // until it is past exec and asleep
		if got := KernelThreadStacks("lvslabzz"); strings.HasPrefix(got, want+"S: ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("got %q, want %q and state S", KernelThreadStacks("lvslabzz"), want)
}
