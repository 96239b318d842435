package scenarios_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
	"gonum.org/v1/gonum/mathext"
)

// holeRateLabs is how many labs each round of BenchmarkIPVSCrashHoleRate
// runs at once, each a fresh lab and one crash.
const holeRateLabs = 6

// BenchmarkIPVSCrashHoleRate is the crash hole's rate per run (#24): for
// each fix and implementation, rounds of six fresh labs at once, each
// one failover-kill with port reuse (CrashHole: 40 client ports closed
// through the MASTER, its director SIGKILLed, the same ports again
// through the new MASTER). A run loops when it shows loop evidence
// (HoleTrial.Loops). Run it with -benchtime Nx: 6N runs a cell. It
// reports the runs that looped, their rate with its two-sided 95%
// Clopper-Pearson interval and the one-sided 95% upper bound, and the
// same counts per port the killed MASTER had sent to the BACKUP. A lab
// the harness fails (one that does not settle, say) is no run: it is
// logged and counted, and only a round that fails whole stops the
// benchmark.
func BenchmarkIPVSCrashHoleRate(b *testing.B) {
	impls := holeImpls(b)
	for _, fix := range []scenarios.Fix{scenarios.FixFwmark, scenarios.FixFwmarkOnly, scenarios.FixBackupOnly} {
		for _, im := range impls {
			if fix == scenarios.FixBackupOnly && im.name == "mixed" {
				continue // not a pair the suite runs under backup_only
			}
			b.Run(string(fix)+"/"+im.name, func(b *testing.B) { benchHoleRate(b, im.defaultAdverts, fix) })
		}
	}
}

// benchHoleRate runs b.N rounds of holeRateLabs crash holes at once.
func benchHoleRate(b *testing.B, impl func() scenarios.Implementation, fix scenarios.Fix) {
	topo := labtest.DefaultTopology(b)
	var runs, loopedRuns, toPeer, loopedPorts, failedPorts, harnessErrors int
	for b.Loop() {
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for range holeRateLabs {
			wg.Go(func() {
				h, err := crashHoleOnce(topo, impl(), fix, scenarios.RemedyNone)
				mu.Lock()
				defer mu.Unlock()
				if err != nil { // the harness's (a lab that did not settle, say): no run, but counted
					b.Logf("crash hole: no run: %v", err)
					errs = append(errs, err)
					harnessErrors++
					return
				}
				runs++
				toPeer, loopedPorts, failedPorts = toPeer+h.ToPeer, loopedPorts+h.Looped, failedPorts+h.Failed
				if h.Loops() {
					loopedRuns++
				}
				if h.Loops() || h.Failed > 0 { // the rest is in the metrics
					b.Logf("crash hole: %s", h)
				}
			})
		}
		wg.Wait()
		if len(errs) == holeRateLabs {
			b.Fatal(errors.Join(errs...))
		}
	}
	lo, hi := clopperPearson(loopedRuns, runs, 0.05)
	b.ReportMetric(float64(runs), "runs")
	b.ReportMetric(float64(loopedRuns), "looped-runs")
	b.ReportMetric(float64(loopedRuns)/float64(runs), "loop-rate") // runs > 0: a round that fails whole stops the benchmark
	b.ReportMetric(lo, "loop-rate-lo")
	b.ReportMetric(hi, "loop-rate-hi")
	b.ReportMetric(upperBound(loopedRuns, runs, 0.05), "loop-rate-upper")
	b.ReportMetric(float64(toPeer), "to-peer-ports")
	b.ReportMetric(float64(loopedPorts), "looped-ports")
	b.ReportMetric(upperBound(loopedPorts, toPeer, 0.05), "port-loop-rate-upper")
	b.ReportMetric(float64(failedPorts), "failed-ports")
	b.ReportMetric(float64(harnessErrors), "harness-errors")
}

// clopperPearson is the exact two-sided 1-alpha interval of a binomial
// rate, k successes of n: the quantiles of the beta distributions
// (Clopper and Pearson, 1934).
func clopperPearson(k, n int, alpha float64) (lo, hi float64) {
	lo, hi = 0, 1
	if n == 0 {
		return lo, hi
	}
	if k > 0 {
		lo = mathext.InvRegIncBeta(float64(k), float64(n-k+1), alpha/2)
	}
	if k < n {
		hi = mathext.InvRegIncBeta(float64(k+1), float64(n-k), 1-alpha/2)
	}
	return lo, hi
}

// upperBound is the exact one-sided 1-alpha upper bound of a binomial
// rate, k successes of n: with none, 1-alpha^(1/n) (3/n, the rule of
// three, for large n).
func upperBound(k, n int, alpha float64) float64 {
	if n == 0 || k >= n {
		return 1
	}
	return mathext.InvRegIncBeta(float64(k+1), float64(n-k), 1-alpha)
}

func TestBinomialBounds(t *testing.T) {
	for _, c := range []struct {
		k, n   int
		lo, hi float64 // exact: bisection on the binomial CDF, math.comb in Python
	}{
		{0, 300, 0, 0.01222},
		{300, 300, 0.98778, 1},
		{141, 300, 0.41240, 0.52820},
		{5, 20, 0.08657, 0.49105},
	} {
		lo, hi := clopperPearson(c.k, c.n, 0.05)
		if fmt.Sprintf("%.5f %.5f", lo, hi) != fmt.Sprintf("%.5f %.5f", c.lo, c.hi) {
			t.Errorf("%d of %d: %.5f-%.5f, want %.5f-%.5f", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
	if u := upperBound(0, 300, 0.05); fmt.Sprintf("%.5f", u) != "0.00994" {
		t.Errorf("0 of 300, one-sided upper bound: %.5f, want 0.00994 (1-0.05^(1/300))", u)
	}
	if u := upperBound(0, 298, 0.05); u <= 0.01 {
		t.Errorf("0 of 298, one-sided upper bound: %.5f, want over 1%% (299 runs are the fewest that show ≤ 1%%)", u)
	}
}
