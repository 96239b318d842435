package scenarios_test

import (
	"context"
	"os"
	"testing"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
)

// holePorts is how many client ports each crash-hole run closes through
// the MASTER and reuses after its crash.
const holePorts = 40

// BenchmarkIPVSCrashHole runs the crash hole (scenarios/crashhole.go) on
// a pair with the mark alone (FixFwmarkOnly: keepalived, the lvslab
// director, and keepalived killed beside the lvslab director), a fresh
// lab per run, with each remedy, and on a pair under backup_only: how
// many reused ports loop, of those the killed MASTER had sent to the
// BACKUP.
func BenchmarkIPVSCrashHole(b *testing.B) {
	impls := holeImpls(b)
	for _, im := range impls {
		for _, remedy := range scenarios.Remedies {
			b.Run(im.name+"/"+string(remedy), func(b *testing.B) { benchHole(b, im.impl, scenarios.FixFwmarkOnly, remedy) })
		}
		if im.name != "mixed" {
			for _, remedy := range scenarios.Candidates {
				b.Run(im.name+"/"+string(remedy), func(b *testing.B) { benchHole(b, im.impl, scenarios.FixFwmarkOnly, remedy) })
			}
		}
		// backup_only instead of the mark: the killed MASTER's master
		// sync daemon leaves it balancing whatever is forwarded to it.
		if im.name != "mixed" { // not a pair the suite runs under backup_only
			b.Run(im.name+"/backup-only", func(b *testing.B) { benchHole(b, im.impl, scenarios.FixBackupOnly, scenarios.RemedyNone) })
		}
	}
}

// benchHole runs the crash hole b.N times, each in a fresh lab, and
// reports the sums per run.
func benchHole(b *testing.B, impl func() scenarios.Implementation, fix scenarios.Fix, remedy scenarios.Remedy) {
	var sum scenarios.HoleTrial
	for b.Loop() {
		h, err := crashHoleOnce(labtest.DefaultTopology(b), impl(), fix, remedy)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("crash hole: %s", h)
		sum.Looped, sum.ToPeer, sum.Served = sum.Looped+h.Looped, sum.ToPeer+h.ToPeer, sum.Served+h.Served
		sum.OldMasterPkts, sum.TimeExceeded = sum.OldMasterPkts+h.OldMasterPkts, sum.TimeExceeded+h.TimeExceeded
	}
	n := float64(b.N)
	b.ReportMetric(float64(sum.Looped)/n, "looped/run")
	b.ReportMetric(float64(sum.ToPeer)/n, "to-peer/run")
	b.ReportMetric(float64(sum.Served)/n, "served/run")
	b.ReportMetric(float64(sum.OldMasterPkts)/n, "old-master-pkts/run")
	b.ReportMetric(float64(sum.TimeExceeded)/n, "time-exceeded/run")
}

// holeImpl is an implementation the crash hole runs, by name.
type holeImpl struct {
	name string
	impl func() scenarios.Implementation
}

// holeImpls are keepalived, the lvslab director and the mixed pair
// (keepalived the MASTER, killed; the lvslab director takes over), where
// kernel IPVS and a built lvslab are.
func holeImpls(b *testing.B) []holeImpl {
	labtest.RequireIPVS(b)
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" {
		b.Fatal("set LVSLAB_BIN to a built lvslab (make bench does)")
	}
	return []holeImpl{
		{"keepalived", func() scenarios.Implementation { return &scenarios.Keepalived{} }},
		{"lvslab", func() scenarios.Implementation { return &scenarios.GoDirector{Binary: bin} }},
		{"mixed", func() scenarios.Implementation {
			return scenarios.Mixed{&scenarios.Keepalived{}, &scenarios.GoDirector{Binary: bin, LearnPeerMAC: true}}
		}},
	}
}

// crashHoleOnce is one run in a fresh lab: its time is the lab's build,
// the pair's start and the run.
func crashHoleOnce(topo *lab.Topology, impl scenarios.Implementation, fix scenarios.Fix, remedy scenarios.Remedy) (scenarios.HoleTrial, error) {
	ctx := context.Background()
	l, c, done, err := scenarios.SettledPair(ctx, topo, impl, fix, lab.Options{})
	if err != nil {
		return scenarios.HoleTrial{}, err
	}
	defer done()
	return scenarios.CrashHole(ctx, l, c, impl, holePorts, remedy)
}
