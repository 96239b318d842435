package scenarios_test

import (
	"context"
	"os"
	"testing"
	"time"

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
			b.Run(im.name+"/"+string(remedy), func(b *testing.B) { benchHole(b, im.defaultAdverts, scenarios.FixFwmarkOnly, remedy) })
		}
		if im.name == "mixed" { // the remedies only: the mixed pair runs neither the candidates nor backup_only
			continue
		}
		for _, remedy := range scenarios.Candidates {
			b.Run(im.name+"/"+string(remedy), func(b *testing.B) { benchHole(b, im.defaultAdverts, scenarios.FixFwmarkOnly, remedy) })
		}
		// At 1 s adverts the reuse comes about 3 s after the kill, when
		// a 1 s FIN_WAIT has let the stale entries expire; at 50 ms it
		// comes within the second.
		fast := func() scenarios.Implementation { return im.impl(50 * time.Millisecond) }
		for _, remedy := range []scenarios.Remedy{scenarios.RemedyFinTimeout, scenarios.RemedyPeerRedirect} {
			b.Run(im.name+"/"+string(remedy)+",advert=50ms", func(b *testing.B) { benchHole(b, fast, scenarios.FixFwmarkOnly, remedy) })
		}
		// backup_only instead of the mark: the killed MASTER's master
		// sync daemon leaves it balancing whatever is forwarded to it.
		b.Run(im.name+"/backup-only", func(b *testing.B) { benchHole(b, im.defaultAdverts, scenarios.FixBackupOnly, scenarios.RemedyNone) })
	}
}

// benchHole runs the crash hole b.N times, each in a fresh lab, and
// reports the sums per run.
func benchHole(b *testing.B, impl func() scenarios.Implementation, fix scenarios.Fix, remedy scenarios.Remedy) {
	topo := labtest.DefaultTopology(b)
	var sum scenarios.HoleTrial
	for b.Loop() {
		h, err := crashHoleOnce(topo, impl(), fix, remedy)
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

// holeImpl is an implementation the crash hole runs, by name, with
// VRRP adverts every advert (0: 1 s).
type holeImpl struct {
	name string
	impl func(advert time.Duration) scenarios.Implementation
}

// defaultAdverts is an implementation with VRRP adverts every second.
func (h holeImpl) defaultAdverts() scenarios.Implementation { return h.impl(0) }

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
		{"keepalived", func(advert time.Duration) scenarios.Implementation { return &scenarios.Keepalived{Advert: advert} }},
		{"lvslab", func(advert time.Duration) scenarios.Implementation {
			return &scenarios.GoDirector{Binary: bin, Advert: advert}
		}},
		{"mixed", func(advert time.Duration) scenarios.Implementation {
			return scenarios.Mixed{&scenarios.Keepalived{Advert: advert}, &scenarios.GoDirector{Binary: bin, LearnPeerMAC: true, Advert: advert}}
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
