package diagnose

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/collect"
)

// TestIPVSDiagnoseLive collects from both boxes of a keepalived pair in
// the lab while a client connects to the VIP, and diagnoses the bundles:
// without a fix the BACKUP re-balances what the MASTER forwards (the loop
// seen live, and by the configs); with the fwmark fix nothing means a loop.
// make test runs the fixed pair only (IPVS_SKIP): its TestUpInVM sees the
// loop live through lvslab exec and collect's CLI.
func TestIPVSDiagnoseLive(t *testing.T) {
	labtest.RequireIPVS(t)
	l, c := pairLab(t)
	ctx := context.Background()
	for _, fix := range []scenarios.Fix{scenarios.FixNone, scenarios.FixFwmark} {
		t.Run(string(fix), func(t *testing.T) {
			startKeepalived(t, l, c, fix)
			stop := connect(l.Box("client"), c)
			dir := t.TempDir()
			var paths []string
			for _, d := range c.Directors {
				var b *collect.Bundle
				config := filepath.Join(l.Dir, d.Node, "keepalived", "keepalived.conf")
				err := l.Box(d.Node).Do(func() (err error) {
					b, err = collect.Collect(ctx, collect.Options{Config: config, Window: 3 * time.Second, Interval: 500 * time.Millisecond})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(dir, d.Node+".tar.gz")
				if err := b.WriteFile(p); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			stop()
			boxes, err := Load(paths, filepath.Join(dir, "unpacked"))
			if err != nil {
				t.Fatal(err)
			}
			fs := Diagnose(boxes)
			live := find(fs, "seen live")
			if fix == scenarios.FixNone && (live == nil || live.Box != "d2" || find(fs, "the two-box loop, by the configs") == nil) {
				t.Errorf("no fix: %v; want the loop seen live on d2, the BACKUP, and by the configs", fs)
			}
			if fix == scenarios.FixFwmark && Loops(fs) {
				t.Errorf("the fwmark fix: %v; want nothing that means a loop", fs)
			}
			for _, f := range fs {
				t.Log(f)
			}
		})
	}
}

// pairLab builds the default two-director lab without MariaDB, each
// director accepting on the MySQL port so health checks pass.
func pairLab(tb testing.TB) (*lab.Lab, scenarios.Cluster) {
	l := labtest.DirectorLab(tb)
	c, err := scenarios.NewCluster(l.Topo)
	if err != nil {
		tb.Fatal(err)
	}
	return l, c
}

// startKeepalived starts keepalived on both directors with fix, settled,
// and stops it when the test ends.
func startKeepalived(tb testing.TB, l *lab.Lab, c scenarios.Cluster, fix scenarios.Fix) {
	ctx := context.Background()
	impl := &scenarios.Keepalived{}
	if err := scenarios.StartBoth(ctx, impl, l, c, fix); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for i := range c.Directors {
			impl.Stop(i, true)
		}
	})
	if err := scenarios.WaitReady(ctx, l, c, 90*time.Second); err != nil {
		tb.Fatal(err)
	}
}

// connect opens a connection to the VIP from client every 50 ms until
// the returned stop is called.
func connect(client *lab.Box, c scenarios.Cluster) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if conn, err := client.DialContext(ctx, "tcp", net.JoinHostPort(c.VIP.String(), "3306")); err == nil {
				conn.Close()
			}
			cancel()
		}
	}()
	return func() { close(done); wg.Wait() }
}
