package scenarios_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
)

// BenchmarkIPVSSteadyState times the headline's first cell from nothing to
// a verdict: the loop with keepalived and no fix, 40 connections. lvslab:
// scenarios.Run (lab, MariaDB, keepalived, workload, observers, teardown).
// reference: the same repro as a shell script, fixtures/bench/steady-state.sh.
// Both must find the loop. traffic-ms is the time from the first
// connection to the last answer.
func BenchmarkIPVSSteadyState(b *testing.B) {
	labtest.RequireIPVS(b)
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("lvslab", func(b *testing.B) {
		var traffic float64
		for range b.N {
			r, err := scenarios.Run(context.Background(), topo, &scenarios.Keepalived{}, scenarios.FixNone, scenarios.Steady,
				scenarios.Options{RunDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			if r.Verdict != scenarios.Loop {
				b.Fatalf("verdict %s, want LOOP: %s", r.Verdict, r.Reason)
			}
			traffic += float64(r.Traffic.Milliseconds())
		}
		b.ReportMetric(traffic/float64(b.N), "traffic-ms")
	})
	b.Run("reference", func(b *testing.B) {
		for range b.N {
			out, err := exec.Command("sh", "../fixtures/bench/steady-state.sh", lab.RandomName()).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "LOOP") {
				b.Fatalf("steady-state.sh: %v: %s", err, out)
			}
		}
	})
}
