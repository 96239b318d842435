package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// The soak (make soak, which sets LVSLAB_SOAK=1): long, bounded runs of
// the CLI that must leave the host as they found it: no namespace, run
// directory, mount, process or host link. Each prints a "soak:" line with
// its numbers, which make soak collects into reports/bench/SOAK.md.

func soak(t *testing.T) {
	if os.Getenv("LVSLAB_SOAK") == "" {
		t.Skip("make soak runs this (LVSLAB_SOAK=1)")
	}
	labtest.RequireRoot(t)
}

// soakCycles is how many up/down cycles TestSoakUpDown runs.
const soakCycles = 100

// TestSoakUpDown: lvslab up (with MariaDB) and down, soakCycles times,
// each cycle a new lab; the host is checked clean after every down.
func TestSoakUpDown(t *testing.T) {
	soak(t)
	runDir := t.TempDir()
	snap := labtest.Snapshot(t)
	var up, down []time.Duration
	for i := range soakCycles {
		name := fmt.Sprintf("soak%d", i)
		t0 := time.Now()
		if _, stderr, code := cli(t, "up", "--kernel", "native", "--lab", name, "--run-dir", runDir); code != 0 {
			t.Fatalf("cycle %d: up: exit %d: %s", i, code, stderr)
		}
		t1 := time.Now()
		if _, stderr, code := cli(t, "down", "--lab", name, "--run-dir", runDir); code != 0 {
			t.Fatalf("cycle %d: down: exit %d: %s", i, code, stderr)
		}
		up, down = append(up, t1.Sub(t0)), append(down, time.Since(t1))
		snap.ExpectClean(t, runDir, name)
		if t.Failed() {
			t.Fatalf("cycle %d left something behind", i)
		}
	}
	fmt.Printf("soak: %d up/down cycles with MariaDB, 0 leaks; up median %s, down median %s\n",
		soakCycles, median(up).Round(time.Millisecond), median(down).Round(time.Millisecond))
}

// TestSoakKilledUp: lvslab up SIGKILLed at several points of its build,
// then lvslab sweep: nothing may remain, wherever the kill landed.
func TestSoakKilledUp(t *testing.T) {
	soak(t)
	runDir := t.TempDir()
	snap := labtest.Snapshot(t)
	delays := []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
		400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond}
	left := 0
	for i, d := range delays {
		name := fmt.Sprintf("kill%d", i)
		up := exec.Command(lvslab, "up", "--kernel", "native", "--lab", name, "--run-dir", runDir)
		if err := up.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		up.Process.Signal(syscall.SIGKILL)
		up.Wait()
		if ns, _ := filepath.Glob(filepath.Join(lab.NetnsDir, lab.Prefix+name+".*")); len(ns) > 0 {
			left++ // the kill landed mid-build: sweep has work to do
		}
		if _, stderr, code := cli(t, "sweep", "--lab", name, "--run-dir", runDir); code != 0 {
			t.Fatalf("kill after %s: sweep: exit %d: %s", d, code, stderr)
		}
		snap.ExpectClean(t, runDir, name)
		if t.Failed() {
			t.Fatalf("kill after %s: sweep left something behind", d)
		}
	}
	if left == 0 {
		t.Errorf("no kill landed mid-build (no namespace left behind by any): the test killed nothing half-built")
	}
	fmt.Printf("soak: lvslab up SIGKILLed after %v, then sweep: %d of %d kills left a half-built lab, 0 leaks after sweep\n",
		delays, left, len(delays))
}

// TestSoakParallel: four labs built, inspected and torn down at once.
func TestSoakParallel(t *testing.T) {
	soak(t)
	runDir := t.TempDir()
	snap := labtest.Snapshot(t)
	const labs = 4
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]string, labs)
	for i := range labs {
		wg.Go(func() {
			name := fmt.Sprintf("par%d", i)
			if _, stderr, code := cli(t, "up", "--kernel", "native", "--lab", name, "--run-dir", runDir); code != 0 {
				errs[i] = fmt.Sprintf("up %s: exit %d: %s", name, code, stderr)
				return
			}
			if _, stderr, code := cli(t, "status", "--lab", name, "--run-dir", runDir); code != 0 {
				errs[i] = fmt.Sprintf("status %s: exit %d: %s", name, code, stderr)
			}
			if _, stderr, code := cli(t, "down", "--lab", name, "--run-dir", runDir); code != 0 {
				errs[i] += fmt.Sprintf("down %s: exit %d: %s", name, code, stderr)
			}
		})
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Error(e)
		}
		snap.ExpectClean(t, runDir, fmt.Sprintf("par%d", i))
	}
	fmt.Printf("soak: %d labs up, status and down at once in %s, 0 leaks\n", labs, time.Since(t0).Round(time.Millisecond))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
