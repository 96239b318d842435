package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lvslab/lvslab/fixtures/field"
	"github.com/lvslab/lvslab/reports"
	"github.com/lvslab/lvslab/scenarios"
)

// BenchmarkRun times the headline job as a user runs it: `lvslab run`
// from start to exit (the micro-VM where the host lacks ip_vs, the six
// scenarios, the report and its screenshot). make bench sets LVSLAB_BIN;
// the target is 60 s under TCG.
func BenchmarkRun(b *testing.B) {
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" || os.Geteuid() != 0 {
		b.Skip("needs root and LVSLAB_BIN (make bench)")
	}
	for b.Loop() {
		out, err := exec.Command(bin, "run", "--reports", b.TempDir()).CombinedOutput()
		if err != nil {
			b.Fatalf("lvslab run: %v\n%s", err, out)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "run-s")
}

// BenchmarkCheck times `lvslab check` on the reference pair as a user runs
// it: from nothing to the verdicts of its six events with the configs as
// given and as prescribed (12 runs, exit 1: the pair loops). Reference:
// `lvslab run` on the same twelve cells of the project's own template pair
// (keepalived, no fix and fwmark), in the same benchmark run. The target
// is 90 s under TCG.
func BenchmarkCheck(b *testing.B) {
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" || os.Geteuid() != 0 {
		b.Skip("needs root and LVSLAB_BIN (make bench)")
	}
	ref := "../../fixtures/check/reference/"
	b.Run("lvslab", func(b *testing.B) {
		for b.Loop() {
			out, err := exec.Command(bin, "check", "--reports", b.TempDir(), ref+"db1.conf", ref+"db2.conf").CombinedOutput()
			if code := exitCodeOf(err); code != 1 {
				b.Fatalf("lvslab check: exit %d (want 1: the pair loops): %v\n%s", code, err, out)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "check-s")
	})
	b.Run("reference", func(b *testing.B) {
		args := []string{"run", "--connections", "20"}
		for _, ev := range checkEvents {
			args = append(args, "--cell", string(ev)+"/keepalived/none", "--cell", string(ev)+"/keepalived/fwmark")
		}
		for b.Loop() {
			// Exit 1 is fine: some template cells do not meet the suite's
			// expectations (a graceful stop is CLEAN without a fix).
			out, err := exec.Command(bin, append(args, "--reports", b.TempDir())...).CombinedOutput()
			if code := exitCodeOf(err); code > 1 {
				b.Fatalf("lvslab run: exit %d: %v\n%s", code, err, out)
			}
		}
	})
}

// BenchmarkField runs `lvslab check --events steady-state` on every case
// of the field corpus (fixtures/field, docs/field.md) as a user would,
// with only the files (and the rules files beside them): how many get a
// verdict unaided (the rest are refused, exit 2), how many runs end in
// ERROR (target 0), and how many verdicts equal the ones written in the
// table beforehand, of how many. Once: it is minutes.
func BenchmarkField(b *testing.B) {
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" || os.Geteuid() != 0 {
		b.Skip("needs root and LVSLAB_BIN (make bench)")
	}
	cases, err := field.Read("../../docs/field.md")
	if err != nil {
		b.Fatal(err)
	}
	var verdicts, errs, runs, asExpected int
	for b.Loop() {
		verdicts, errs, runs, asExpected = 0, 0, 0, 0
		for _, c := range cases {
			dir := b.TempDir()
			args := append([]string{"check", "--events", "steady-state", "--reports", dir, "--run-id", c.Name}, c.Args("../../fixtures/field")...)
			out, err := exec.Command(bin, args...).CombinedOutput()
			if exitCodeOf(err) == 2 { // refused: no verdict
				continue
			}
			sum, err := reports.Load(filepath.Join(dir, c.Name))
			if err != nil {
				b.Fatalf("%s: %v\n%s", c.Name, err, out)
			}
			verdicts++
			for _, r := range sum.Results {
				want := c.Yours
				if r.Fix == "prescribed" && c.Prescribed != "-" { // "-": nothing prescribed, the configs run again
					want = c.Prescribed
				}
				runs++
				if r.Verdict == scenarios.Error {
					errs++
				}
				if string(r.Verdict) == want {
					asExpected++
				}
			}
		}
	}
	b.ReportMetric(float64(len(cases)), "cases")
	b.ReportMetric(float64(verdicts), "with-verdict")
	b.ReportMetric(float64(errs), "errors")
	b.ReportMetric(float64(runs), "runs")
	b.ReportMetric(float64(asExpected), "as-expected")
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
