package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/reports"
	"github.com/lvslab/lvslab/scenarios"
)

// cmdRun is the headline job: reproduce the loop and prove the fix.
func cmdRun(args []string) error {
	fs := newFlags("run")
	mode := fs.String("kernel", "", "where the scenarios run: native or vm (default $LVSLAB_KERNEL, else automatic)")
	conns := fs.Int("connections", 40, "client connections per scenario")
	jobs := fs.Int("jobs", 6, "scenarios run at once, each in a lab of its own (1: one at a time)")
	reportDir := fs.String("reports", "reports", "where reports/<run-id>/ and reports/latest go")
	verbose := fs.Bool("v", false, "print each scenario's steps (lab up, directors ready, traffic, verdict) with their times")
	repeat := fs.Int("repeat", 1, "run each cell K times and count its verdicts (a cell whose runs disagree is UNSTABLE)")
	var cellArgs stringList
	fs.Var(&cellArgs, "cell", "run this cell instead of the headline set: EVENT/IMPLEMENTATION/FIX, e.g. vrrp-switchover/keepalived/redirect (repeatable)")
	// Six labs at once peak at 1.7 GiB in the guest (twelve mariadbd, their
	// datadirs on its tmpfs).
	v := addVMFlags(fs, false, 4096)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *jobs < 1 {
		return usageError("--jobs %d: want 1 or more", *jobs)
	}
	if *repeat < 1 {
		return usageError("--repeat %d: want 1 or more", *repeat)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cells, err := parseCells(cellArgs, self)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return lab.ErrNotRoot
	}
	info, err := kernel.Detect(*mode)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*reportDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if info.Mode == kernel.VM {
		// Run this very command in the micro-VM; reports land on the host.
		fmt.Fprintf(os.Stderr, "lvslab: %s: running the scenarios in a micro-VM\n", info.Reason)
		v.shares = append(v.shares, dir)
		argv := []string{self, "run", "--kernel", kernel.Native, "--reports", dir, "--connections", fmt.Sprint(*conns),
			"--jobs", fmt.Sprint(*jobs), "--repeat", fmt.Sprint(*repeat), "-v=" + fmt.Sprint(*verbose)}
		for _, c := range cellArgs {
			argv = append(argv, "--cell", c)
		}
		code, err := v.runInVM(argv)
		if err != nil {
			return err
		}
		screenshot(filepath.Join(dir, "latest")) // on the host: Chromium under TCG is slow
		return exitCode(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	if err != nil {
		return err
	}
	runner := kernel.Native
	if os.Getenv(lab.InVMEnv) != "" {
		runner = kernel.VM
	}
	sum := &reports.Summary{RunID: reports.RunID(time.Now()), Started: time.Now(), Kernel: kernel.Release(), Runner: runner,
		Findings: scenarios.Findings}
	run := filepath.Join(dir, sum.RunID)
	opts := scenarios.Options{Connections: *conns, CaptureDir: filepath.Join(run, "pcap")}
	if *verbose {
		opts.Progress = os.Stderr
	}
	// Every run of every cell has a lab of its own; most of a scenario is
	// waiting on timers (VRRP's Master_Down_Interval, the IPVS
	// estimator), so several run at once.
	runs := make([][]*scenarios.Result, len(cells))
	for i := range runs {
		runs[i] = make([]*scenarios.Result, *repeat)
	}
	var errs []error
	var mu sync.Mutex
	slots := make(chan struct{}, *jobs)
	var wg sync.WaitGroup
	for k := range *repeat {
		for i, c := range cells {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				impl := c.impl()
				name := fmt.Sprintf("%s, %s, fix %s", c.ev, impl.Name(), c.fix)
				if *repeat > 1 {
					name += fmt.Sprintf(", run %d of %d", k+1, *repeat)
				}
				fmt.Fprintf(os.Stderr, "lvslab: %s: %d connections\n", name, *conns)
				r, err := scenarios.Run(ctx, topo, impl, c.fix, c.ev, opts)
				if err == nil {
					r.Pcap, err = filepath.Rel(run, r.Pcap)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					mu.Unlock()
					return
				}
				fmt.Fprintf(os.Stderr, "lvslab:   %s: %s (expected %s): %s\n", name, r.Verdict, r.Expected, r.Reason)
				runs[i][k] = r
			})
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, rs := range runs {
		r := rs[0]
		if *repeat > 1 {
			r = scenarios.Tally(rs)
		}
		sum.Results = append(sum.Results, r)
	}
	out, err := sum.Write(dir)
	if err != nil {
		return err
	}
	fmt.Println()
	sum.Matrix(os.Stdout)
	fmt.Printf("\nReport: %s/index.html (data: summary.json)\n", out)
	if os.Getenv(lab.InVMEnv) == "" {
		screenshot(out)
	}
	if !sum.Pass() {
		return &exitError{code: 1, err: fmt.Errorf("a verdict did not match its expectation")}
	}
	return nil
}

// cmdReport re-renders index.html of a run from its summary.json, or
// merges the reports of a suite's shards.
func cmdReport(args []string) error {
	if len(args) > 0 && args[0] == "merge" {
		return cmdReportMerge(args[1:])
	}
	fs := newFlags("report")
	reportDir := fs.String("reports", "reports", "the reports directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	run := "latest"
	if fs.NArg() > 0 {
		run = fs.Arg(0)
	}
	dir := filepath.Join(*reportDir, run)
	if err := reports.Render(dir); err != nil {
		return err
	}
	fmt.Println(filepath.Join(dir, "index.html"))
	return nil
}

// cmdReportMerge writes one report from the run directories of a suite's
// shards: every cell exactly once, each naming its shard, host and kernel.
func cmdReportMerge(args []string) error {
	fs := newFlags("report merge")
	reportDir := fs.String("reports", "reports", "where the merged run goes: DIR/<run-id>/, and DIR/latest")
	runID := fs.String("run-id", reports.RunID(time.Now())+"-merged", "the merged run's name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("want: lvslab report merge [--reports DIR] [--run-id ID] SHARD-RUN-DIR...")
	}
	var shards []*reports.Summary
	for _, dir := range fs.Args() {
		s, err := reports.Load(dir)
		if err != nil {
			return err
		}
		shards = append(shards, s)
	}
	sum, err := reports.Merge(*runID, shards)
	if err != nil {
		return err
	}
	out, err := sum.Write(*reportDir)
	if err != nil {
		return err
	}
	sum.Matrix(os.Stdout)
	fmt.Printf("\nMerged %d shards, %d cells: %s/index.html\n", len(shards), len(sum.Results), out)
	if !sum.Pass() {
		return &exitError{code: 1, err: fmt.Errorf("a verdict did not match its expectation")}
	}
	return nil
}

// screenshot keeps a picture of the report beside it when Chromium is here.
func screenshot(dir string) {
	if reports.Chromium() == "" {
		return
	}
	if png, err := reports.Screenshot(context.Background(), dir); err != nil {
		fmt.Fprintf(os.Stderr, "lvslab: no screenshot: %v\n", err)
	} else {
		fmt.Printf("Screenshot: %s\n", png)
	}
}

// cell is one scenario of a run: an event, an implementation on both
// boxes and a fix.
type cell struct {
	impl func() scenarios.Implementation
	ev   scenarios.Event
	fix  scenarios.Fix
}

// parseCells reads --cell EVENT/IMPLEMENTATION/FIX arguments; with none,
// the headline set, for keepalived and for our Go director: the loop and
// its fix in steady state, and the fix through a crash of the MASTER's
// director.
func parseCells(args []string, self string) ([]cell, error) {
	impls := map[string]func() scenarios.Implementation{"keepalived": keepalived, "lvslab": goDirector(self)}
	if len(args) == 0 {
		var cells []cell
		for _, impl := range []string{"keepalived", "lvslab"} {
			cells = append(cells, cell{impls[impl], scenarios.Steady, scenarios.FixNone}, cell{impls[impl], scenarios.Steady, scenarios.FixFwmark},
				cell{impls[impl], scenarios.FailoverKill, scenarios.FixFwmark})
		}
		return cells, nil
	}
	var cells []cell
	for _, a := range args {
		parts := strings.Split(a, "/")
		if len(parts) != 3 {
			return nil, usageError("--cell %q: want EVENT/IMPLEMENTATION/FIX, e.g. vrrp-switchover/keepalived/redirect", a)
		}
		ev, impl, fix := scenarios.Event(parts[0]), impls[parts[1]], scenarios.Fix(parts[2])
		switch {
		case !slices.Contains(scenarios.Events, ev):
			return nil, usageError("--cell %q: event %q: want one of %v", a, parts[0], scenarios.Events)
		case impl == nil:
			return nil, usageError("--cell %q: implementation %q: want keepalived or lvslab", a, parts[1])
		case !slices.Contains(scenarios.Fixes, fix):
			return nil, usageError("--cell %q: fix %q: want one of %v", a, parts[2], scenarios.Fixes)
		}
		cells = append(cells, cell{impl, ev, fix})
	}
	return cells, nil
}

func keepalived() scenarios.Implementation { return &scenarios.Keepalived{} }

func goDirector(bin string) func() scenarios.Implementation {
	return func() scenarios.Implementation { return &scenarios.GoDirector{Binary: bin} }
}
