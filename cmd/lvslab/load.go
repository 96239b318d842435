package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/scenarios"
)

// loadPort is where the load's built-in backend listens: a one-line
// answer per connection keeps MariaDB's handshake out of what is measured.
const loadPort = 9000

// cmdLoad draws the loop's cost curve: a paced workload through the VIP
// at each rate, in steady state, for one director alone (the reference)
// and for the pair without a fix and with each fix, one lab at a time.
func cmdLoad(args []string) error {
	fs := newFlags("load")
	rateList := fs.String("rates", "10,50,200", "connection rates, per second, comma-separated")
	dur := fs.Duration("duration", 10*time.Second, "how long each rate runs (1s to 60s)")
	implName := fs.String("impl", "keepalived", "the directors: keepalived or lvslab")
	fixList := fs.String("fixes", "", "the fixes, comma-separated (default: every fix the directors run)")
	reportDir := fs.String("reports", "reports", "where reports/<run-id>/ and reports/latest go")
	mode := fs.String("kernel", "", "where the labs run: native or vm (default $LVSLAB_KERNEL, else automatic)")
	runID := fs.String("run-id", "", "the run's name under --reports (default: its start time)")
	v := addVMFlags(fs, false, 2048)
	if err := parse(fs, args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cells, rates, fixes, err := loadCells(self, *rateList, *dur, *implName, *fixList)
	if err != nil {
		return err
	}
	info, dir, id, started, err := startRun(*mode, *reportDir, *runID)
	if err != nil {
		return err
	}
	if info.Mode == kernel.VM {
		fmt.Fprintf(os.Stderr, "lvslab: %s: running the load in a micro-VM\n", info.Reason)
		argv := append([]string{self, "load"}, args...)
		return reportInVM(v, append(argv, "--kernel", kernel.Native, "--reports", dir, "--run-id", id), dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	topo, sum, err := templateRun(id, started)
	if err != nil {
		return err
	}
	// One lab at a time: the softirq time is the whole machine's.
	opts := scenarios.Options{Service: scenarios.Service{Port: loadPort, Backend: scenarios.BackendBanner}}
	fmt.Fprintf(os.Stderr, "lvslab load: %d runs of %s (rates %v/s, one director and the pair with %v), one at a time\n",
		len(cells), *dur, rates, fixes)
	if err := runCells(ctx, sum, scenarios.Matrix{Topo: topo, Cells: cells, Repeat: 1, Jobs: 1, Options: opts}, dir); err != nil {
		return err
	}
	fmt.Println()
	sum.LoadTable(os.Stdout)
	if !sum.Pass() {
		return &exitError{code: 1, err: fmt.Errorf("a verdict did not match its expectation")}
	}
	return nil
}

// loadCells are the load's cells: at each rate, one director for
// reference and the pair with each fix, for dur each.
func loadCells(self, rateList string, dur time.Duration, implName, fixList string) (cells []scenarios.Cell, rates []int, fixes []scenarios.Fix, err error) {
	for _, f := range strings.Split(rateList, ",") {
		r, err := strconv.Atoi(f)
		if err != nil || r < 1 || r > 1000 {
			return nil, nil, nil, usageError("--rates %q: want whole numbers from 1 to 1000", rateList)
		}
		rates = append(rates, r)
	}
	if dur < time.Second || dur > time.Minute {
		return nil, nil, nil, usageError("--duration %s: want 1s to 60s", dur)
	}
	impl := scenarios.Implementations(self)[implName]
	if impl == nil {
		return nil, nil, nil, usageError("--impl %q: want keepalived or lvslab", implName)
	}
	fixes = []scenarios.Fix{scenarios.FixNone, scenarios.FixFwmark, scenarios.FixBackupOnly}
	if implName == "keepalived" {
		fixes = append(fixes, scenarios.FixRedirect)
	}
	if fixList != "" {
		var want []scenarios.Fix
		for _, f := range strings.Split(fixList, ",") {
			if !slices.Contains(fixes, scenarios.Fix(f)) {
				return nil, nil, nil, usageError("--fixes %q: want some of %v", fixList, fixes)
			}
			want = append(want, scenarios.Fix(f))
		}
		fixes = want
	}
	for _, r := range rates {
		n := r * int(dur.Seconds())
		cells = append(cells, scenarios.Cell{Impl: impl, Event: scenarios.Steady, Fix: scenarios.FixNone, Rate: r, Connections: n, Single: true})
		for _, f := range fixes {
			cells = append(cells, scenarios.Cell{Impl: impl, Event: scenarios.Steady, Fix: f, Rate: r, Connections: n})
		}
	}
	return cells, rates, fixes, nil
}
