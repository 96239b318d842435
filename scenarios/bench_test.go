package scenarios_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

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

// soakCycles is how many failover/failback cycles TestIPVSSoakFailover runs.
const soakCycles = 20

// TestIPVSSoakFailover (make soak, LVSLAB_SOAK=1): one keepalived pair
// with the fwmark guard, the write workload running throughout, through
// soakCycles failovers (the MASTER's keepalived SIGKILLed, the BACKUP
// takes the VIP) and failbacks (restarted, it preempts): every
// acknowledged write must be readable afterwards, and the lab must leave
// nothing behind.
func TestIPVSSoakFailover(t *testing.T) {
	if os.Getenv("LVSLAB_SOAK") == "" {
		t.Skip("make soak runs this (LVSLAB_SOAK=1)")
	}
	labtest.RequireIPVS(t)
	ctx := context.Background()
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	if err != nil {
		t.Fatal(err)
	}
	c, err := scenarios.NewCluster(topo)
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.Build(t, topo, lab.Options{})
	impl := &scenarios.Keepalived{}
	defer func() {
		for i := range c.Directors {
			impl.Stop(i, true)
		}
	}()
	if err := scenarios.StartBoth(ctx, impl, l, c, scenarios.FixFwmark); err != nil {
		t.Fatal(err)
	}
	if err := scenarios.WaitReady(ctx, l, c, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	client, vip := l.Box("client"), net.JoinHostPort(c.VIP.String(), fmt.Sprint(c.Port))
	stop, done := make(chan struct{}), make(chan []scenarios.Write)
	go func() {
		done <- scenarios.Writes(ctx, client, vip, time.Now().UnixNano(), 50*time.Millisecond, 2*time.Second, stop)
	}()
	var over, back []time.Duration
	for k := range soakCycles {
		t0 := time.Now()
		if err := impl.Stop(0, false); err != nil {
			t.Fatal(err)
		}
		if err := scenarios.WaitFor(ctx, 15*time.Second, func() string { return scenarios.HoldsVIP(l.Box(c.Directors[1].Node), c) }); err != nil {
			t.Fatalf("cycle %d: failover: %v", k, err)
		}
		t1 := time.Now()
		if err := impl.Start(ctx, l, c, 0, scenarios.FixFwmark); err != nil {
			t.Fatal(err)
		}
		if err := scenarios.WaitReady(ctx, l, c, 30*time.Second); err != nil {
			t.Fatalf("cycle %d: failback: %v", k, err)
		}
		over, back = append(over, t1.Sub(t0)), append(back, time.Since(t1))
	}
	close(stop)
	writes := <-done
	var dbs []string
	for _, a := range c.Realservers() {
		dbs = append(dbs, net.JoinHostPort(a.String(), fmt.Sprint(c.Port)))
	}
	ws, err := scenarios.CheckWrites(ctx, client, dbs, writes, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Lost > 0 || ws.Acked == 0 {
		t.Errorf("writes: %d acknowledged of %d, %d lost (%v)", ws.Acked, ws.Attempted, ws.Lost, ws.LostIDs)
	}
	slices.Sort(over)
	slices.Sort(back)
	fmt.Printf("soak: %d failover/failback cycles (keepalived, fwmark guard) with the write workload: %d writes acknowledged of %d, %d lost; failover median %s, failback median %s\n",
		soakCycles, ws.Acked, ws.Attempted, ws.Lost, over[len(over)/2].Round(time.Millisecond), back[len(back)/2].Round(time.Millisecond))
}
