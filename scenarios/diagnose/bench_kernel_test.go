package diagnose

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/collect"
)

// BenchmarkIPVSCollect collects from the BACKUP of a keepalived pair
// without a fix, under connections (no live window: the reads alone),
// with lvslab collect and with fixtures/bench/collect.sh as the
// reference, in the same run.
func BenchmarkIPVSCollect(b *testing.B) {
	labtest.RequireIPVS(b)
	l, c := pairLab(b)
	startKeepalived(b, l, c, scenarios.FixNone)
	ctx := context.Background()
	stop := connect(l.Box("client"), c)
	defer stop()
	dir := b.TempDir()
	config := func(node string) string { return filepath.Join(l.Dir, node, "keepalived", "keepalived.conf") }
	bundle := func(node string) string {
		var bd *collect.Bundle
		err := l.Box(node).Do(func() (err error) {
			bd, err = collect.Collect(ctx, collect.Options{Config: config(node)})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, node+".tar.gz")
		if err := bd.WriteFile(p); err != nil {
			b.Fatal(err)
		}
		return p
	}
	size := func(p string) float64 {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		return float64(st.Size())
	}
	b.Run("lvslab", func(b *testing.B) {
		var p string
		for b.Loop() {
			p = bundle("d2")
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "collect-ms")
		b.ReportMetric(size(p), "bundle-bytes")
	})
	b.Run("reference", func(b *testing.B) {
		script, err := filepath.Abs("../../fixtures/bench/collect.sh")
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, "reference.tar.gz")
		for b.Loop() {
			if code, err := l.Box("d2").Run(ctx, []string{script, config("d2"), p}, os.Stderr, os.Stderr); err != nil || code != 0 {
				b.Fatalf("%s: exit %d, %v", script, code, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "collect-ms")
		b.ReportMetric(size(p), "bundle-bytes")
	})
}

// BenchmarkDiagnose diagnoses the seed's pair from its two bundles, as
// lvslab diagnose does: read, unpack, parse, judge.
func BenchmarkDiagnose(b *testing.B) {
	a, c := pair("check/reference")
	dir := b.TempDir()
	paths := []string{a.bundle(b, dir), c.bundle(b, dir)}
	for b.Loop() {
		boxes, err := Load(paths, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if !Loops(Diagnose(boxes)) {
			b.Fatal("no loop found in the seed's pair")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "diagnose-ms")
}
