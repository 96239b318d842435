package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab/runenv"

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
	verbose := fs.BoolP("verbose", "v", false, "print each scenario's steps (lab up, directors ready, traffic, verdict) with their times")
	repeat := fs.Int("repeat", 1, "run each cell K times and count its verdicts (a cell whose runs disagree is UNSTABLE)")
	var cellArgs []string
	fs.StringArrayVar(&cellArgs, "cell", nil, "run this cell instead of the headline set: EVENT/IMPLEMENTATION/FIX, e.g. vrrp-switchover/keepalived/redirect (repeatable)")
	kernels := fs.String("kernels", "", "run the cells on each of these cached kernels, in turn (comma-separated versions or suites, see lvslab kernel list), into one report with a kernel column")
	runID := fs.String("run-id", "", "the run's name under --reports (default: its start time)")
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
	cells, err := runSet(self, cellArgs)
	if err != nil {
		return err
	}
	info, dir, id, started, err := startRun(*mode, *reportDir, *runID)
	if err != nil {
		return err
	}
	if *kernels != "" && info.Mode != kernel.VM {
		return usageError("--kernels needs the micro-VM runner (--kernel vm)")
	}
	if info.Mode == kernel.VM {
		// Run this very command in the micro-VM (once per kernel); reports
		// land on the host.
		fmt.Fprintf(os.Stderr, "lvslab: %s: running the scenarios in a micro-VM\n", info.Reason)
		argv := []string{self, "run", "--kernel", kernel.Native, "--reports", dir, "--connections", fmt.Sprint(*conns),
			"--jobs", fmt.Sprint(*jobs), "--repeat", fmt.Sprint(*repeat), "-v=" + fmt.Sprint(*verbose)}
		for _, c := range cellArgs {
			argv = append(argv, "--cell", c)
		}
		return runInVM(v, argv, *kernels, dir, id)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	topo, sum, err := templateRun(id, started)
	if err != nil {
		return err
	}
	opts := scenarios.Options{Connections: *conns}
	if *verbose {
		opts.Progress = os.Stderr
	}
	if err := runCells(ctx, sum, scenarios.Matrix{Topo: topo, Cells: cells, Repeat: *repeat, Jobs: *jobs, Options: opts}, dir); err != nil {
		return err
	}
	if !sum.Pass() {
		return &exitError{code: 1, err: fmt.Errorf("a verdict did not match its expectation")}
	}
	return nil
}

// templateRun is a native run's topology, the built-in default, and
// its summary, empty.
func templateRun(id string, started time.Time) (*lab.Topology, *reports.Summary, error) {
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	return topo, &reports.Summary{RunID: id, Started: started, Kernel: kernel.Release(), Runner: kernel.CurrentRunner(),
		Findings: scenarios.Findings}, err
}

// runInVM runs argv in the micro-VM, once, or once per kernel of
// kernels (comma-separated) into one merged report.
func runInVM(v *vmFlags, argv []string, kernels, dir, id string) error {
	if kernels == "" {
		return reportInVM(v, append(argv, "--run-id", id), dir)
	}
	v.shares = append(v.shares, dir)
	return runKernels(v, argv, strings.Split(kernels, ","), dir, id)
}

// runSet is the cells run runs: the headline set, or those --cell names.
func runSet(self string, cellArgs []string) ([]scenarios.Cell, error) {
	if len(cellArgs) == 0 {
		return scenarios.Headline(self), nil
	}
	var cells []scenarios.Cell
	for _, a := range cellArgs {
		c, err := scenarios.ParseCell(a, self)
		if err != nil {
			return nil, usageError("--%v", err)
		}
		cells = append(cells, c)
	}
	return cells, nil
}

// reportInVM runs argv (this command again, natively, writing its report
// under dir) in the micro-VM with dir shared, renders the report's
// screenshot on the host (Chromium under TCG is slow) and exits as argv
// did.
func reportInVM(v *vmFlags, argv []string, dir string) error {
	v.shares = append(v.shares, dir)
	code, err := v.runInVM(argv)
	if err != nil {
		return err
	}
	screenshot(filepath.Join(dir, "latest"))
	return exitCode(code)
}

// startRun decides where a run's scenarios go (kernel mode) and its
// report (the absolute reports directory, made, and the run's id). Labs
// need root.
func startRun(mode, reportDir, runID string) (kernel.Info, string, string, time.Time, error) {
	if os.Geteuid() != 0 {
		return kernel.Info{}, "", "", time.Time{}, lab.ErrNotRoot
	}
	info, err := kernel.Detect(mode)
	if err != nil {
		return info, "", "", time.Time{}, err
	}
	dir, err := filepath.Abs(reportDir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	started := time.Now()
	return info, dir, cmp.Or(runID, reports.RunID(started)), started, err
}

// runCells runs m into sum, writes the report under dir (the captures
// in its pcap/) and prints its matrix.
func runCells(ctx context.Context, sum *reports.Summary, m scenarios.Matrix, dir string) error {
	for _, c := range m.Cells {
		sum.Cells = append(sum.Cells, c.Name())
	}
	run := filepath.Join(dir, sum.RunID)
	m.Options.CaptureDir = filepath.Join(run, "pcap")
	var err error
	if sum.Results, err = m.Run(ctx, os.Stderr); err != nil {
		return err
	}
	for _, r := range sum.Results {
		if r.Pcap != "" {
			r.Pcap, _ = filepath.Rel(run, r.Pcap)
		}
	}
	sum.SetPairVerdict()
	out, err := sum.Write(dir)
	if err != nil {
		return err
	}
	fmt.Println()
	sum.Matrix(os.Stdout)
	if sum.PairVerdict != "" {
		fmt.Printf("\n%s\n", sum.PairVerdict)
	}
	fmt.Printf("\nReport: %s/index.html (data: summary.json)\n", out)
	if !runenv.InMicroVM() {
		screenshot(out)
	}
	return nil
}

// runKernels runs argv (a `lvslab run` in the guest) once per kernel, then
// merges the runs into one report, a kernel column in its matrix.
func runKernels(v *vmFlags, argv, kernels []string, dir, id string) error {
	var runs []*reports.Summary
	for _, k := range kernels {
		fmt.Fprintf(os.Stderr, "lvslab: kernel %s\n", k)
		v.vmKernel = k
		runDir := id + "-" + k
		// A run's failed verdicts are in its summary; its exit code adds
		// nothing the merged report does not say.
		if _, err := v.runInVM(append(slices.Clone(argv), "--run-id", runDir)); err != nil {
			return fmt.Errorf("kernel %s: %w", k, err)
		}
		s, err := reports.Load(filepath.Join(dir, runDir))
		if err != nil {
			return fmt.Errorf("kernel %s: %w", k, err)
		}
		runs = append(runs, s)
	}
	out, err := writeMerged(dir, id, runs)
	if out != "" {
		screenshot(out)
	}
	return err
}

// writeMerged merges runs (shards, or one run per kernel) into dir/id/,
// prints the matrix, and fails with exit 1 when a verdict did not match.
func writeMerged(dir, id string, runs []*reports.Summary) (string, error) {
	sum, err := reports.Merge(id, runs)
	if err != nil {
		return "", err
	}
	out, err := sum.Write(dir)
	if err != nil {
		return "", err
	}
	fmt.Println()
	sum.Matrix(os.Stdout)
	fmt.Printf("\nMerged %d runs, %d cells (kernels %s): %s/index.html\n", len(runs), len(sum.Results), sum.Kernel, out)
	if !sum.Pass() {
		return out, &exitError{code: 1, err: fmt.Errorf("a verdict did not match its expectation")}
	}
	return out, nil
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
	_, err := writeMerged(*reportDir, *runID, shards)
	return err
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
