package lab_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// BenchmarkUpDown builds and removes the two-director topology (network
// only) with lab.Build, and with the iproute2 script of the same topology in
// fixtures/bench as the reference, in the same run.
func BenchmarkUpDown(b *testing.B) {
	labtest.RequireRoot(b)
	topo := labtest.DefaultTopology(b)
	runDir := b.TempDir()
	b.Run("lvslab", func(b *testing.B) {
		var up time.Duration
		for b.Loop() {
			t0 := time.Now()
			l, err := lab.Build(context.Background(), topo, lab.Options{RunDir: runDir, NoServices: true})
			if err != nil {
				b.Fatal(err)
			}
			up += time.Since(t0)
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(up.Microseconds())/float64(b.N)/1000, "up-ms")
	})
	b.Run("reference", func(b *testing.B) {
		script := "../fixtures/bench/two-director.sh"
		var up time.Duration
		for b.Loop() {
			t0 := time.Now()
			if out, err := exec.Command(script, "up", "bench").CombinedOutput(); err != nil {
				exec.Command(script, "down", "bench").Run()
				b.Fatalf("%s up: %v\n%s", script, err, out)
			}
			up += time.Since(t0)
			if out, err := exec.Command(script, "down", "bench").CombinedOutput(); err != nil {
				b.Fatalf("%s down: %v\n%s", script, err, out)
			}
		}
		b.ReportMetric(float64(up.Microseconds())/float64(b.N)/1000, "up-ms")
	})
}

// BenchmarkMariaDBReady times one backend from start (datadir copy
// included) to the first answered ping, and its stop.
func BenchmarkMariaDBReady(b *testing.B) {
	l := labtest.Build(b, labtest.DefaultTopology(b), lab.Options{NoServices: true})
	ctx := context.Background()
	if _, err := l.StartMariaDB(ctx, "d1"); err != nil { // makes the template
		b.Fatal(err)
	}
	var ready time.Duration
	for b.Loop() {
		t0 := time.Now()
		p, err := l.StartMariaDB(ctx, "d2")
		if err != nil {
			b.Fatal(err)
		}
		ready += time.Since(t0)
		p.Stop(lab.StopGrace)
	}
	b.ReportMetric(float64(ready.Milliseconds())/float64(b.N), "ready-ms")
}
