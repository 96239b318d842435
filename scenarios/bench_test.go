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

// loadRate and loadFor are the load benchmark's point of the curve.
const (
	loadRate = 200
	loadFor  = 10
)

// BenchmarkIPVSLoad: the p99 latency (ns/op) of the connections the
// keepalived pair with the fwmark guard served at loadRate connections/s
// for loadFor s, against one director in front of the same two boxes
// (reference), in the same run. frames/conn counts the frames on the
// directors' bridge ports per connection.
func BenchmarkIPVSLoad(b *testing.B) {
	labtest.RequireIPVS(b)
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		fix    scenarios.Fix
		single bool
	}{{"fwmark", scenarios.FixFwmark, false}, {"reference", scenarios.FixNone, true}} {
		b.Run(c.name, func(b *testing.B) {
			var p99, frames float64
			for range b.N {
				r, err := scenarios.Run(context.Background(), topo, &scenarios.Keepalived{}, c.fix, scenarios.Steady, scenarios.Options{
					Connections: loadRate * loadFor, Rate: loadRate, SingleDirector: c.single, Expected: scenarios.Clean, RunDir: b.TempDir(),
					Service: scenarios.Service{Port: 9000, Backend: scenarios.BackendBanner}})
				if err != nil {
					b.Fatal(err)
				}
				if !r.Pass {
					b.Fatalf("verdict %s, want CLEAN: %s", r.Verdict, r.Reason)
				}
				p99 += float64(r.Latency.P99)
				frames += r.FramesPerConn
			}
			b.ReportMetric(p99/float64(b.N), "ns/op")
			b.ReportMetric(frames/float64(b.N), "frames/conn")
		})
	}
}
