package director_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
)

// BenchmarkIPVSReconcile installs n virtual services of two destinations
// each in kernel IPVS. empty-N: lvslab's Reconcile from an empty table,
// against `ipvsadm -R` restoring the same table (reference; Debian's
// ipvsadm-restore is a shell script around it that adds about 0.3 s under
// TCG). noop-N: Reconcile on the installed table, which reads it from
// /proc/net/ip_vs in one pass, against `ipvsadm -Ln` reading it
// (reference), which dumps each service's destinations over netlink.
// The table is flushed between iterations, untimed.
func BenchmarkIPVSReconcile(b *testing.B) {
	labtest.RequireIPVS(b)
	l := labtest.Build(b, labtest.DefaultTopology(b), lab.Options{NoServices: true})
	box := l.Box("d1")
	var h *director.Kernel
	if err := box.Do(func() (err error) { h, err = director.OpenKernel(); return err }); err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	flush := func(b *testing.B) {
		b.StopTimer()
		if err := h.Flush(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	ipvsadm := func(b *testing.B, stdin []byte, args ...string) {
		err := box.Do(func() error {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Stdin = bytes.NewReader(stdin)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %w: %s", args[0], err, out)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reconcile := func(b *testing.B, previous, want []director.Service, wantNone bool) {
		c, err := director.Reconcile(h, previous, want)
		if err != nil || wantNone && !c.None() {
			b.Fatalf("reconcile: %+v %v", c, err)
		}
	}
	for _, n := range []int{1, 100, 1000} {
		want, restore := table(n)
		b.Run(fmt.Sprintf("empty-%d/lvslab", n), func(b *testing.B) {
			for b.Loop() {
				flush(b)
				reconcile(b, nil, want, false)
			}
		})
		b.Run(fmt.Sprintf("empty-%d/reference", n), func(b *testing.B) {
			for b.Loop() {
				flush(b)
				ipvsadm(b, restore, "ipvsadm", "-R")
			}
		})
		b.Run(fmt.Sprintf("noop-%d/lvslab", n), func(b *testing.B) {
			reconcile(b, nil, want, false)
			for b.Loop() {
				reconcile(b, want, want, true)
			}
		})
		b.Run(fmt.Sprintf("noop-%d/reference", n), func(b *testing.B) {
			for b.Loop() {
				ipvsadm(b, nil, "ipvsadm", "-Ln")
			}
		})
		flush(b)
	}
}

// table is n TCP services on the VIP, ports 10000 up, each with both
// boxes as DR realservers: as desired Services and as `ipvsadm -R` input.
func table(n int) ([]director.Service, []byte) {
	vip := netip.MustParseAddr("192.168.1.200")
	rs := []netip.Addr{netip.MustParseAddr("192.168.1.233"), netip.MustParseAddr("192.168.1.213")}
	var svcs []director.Service
	var restore bytes.Buffer
	for i := range n {
		port := uint16(10000 + i)
		s := director.Service{Protocol: "tcp", VIP: vip, Port: port, Scheduler: "rr"}
		fmt.Fprintf(&restore, "-A -t %s:%d -s rr\n", vip, port)
		for _, a := range rs {
			s.Dests = append(s.Dests, director.Dest{Addr: a, Port: port, Weight: 1, Forward: director.Route})
			fmt.Fprintf(&restore, "-a -t %s:%d -r %s:%d -g -w 1\n", vip, port, a, port)
		}
		svcs = append(svcs, s)
	}
	return svcs, restore.Bytes()
}

// BenchmarkIPVSFailover times a SIGKILL of the MASTER's director until the
// BACKUP holds the VIP (the kernel's address event, scenarios.VIPWatch), advert_int 1 s, priorities 150/100: lvslab on both
// boxes, and keepalived on both as the reference, in the same lab. VRRP
// predicts 3 x advert_int + skew = 3.61 s after the last advert heard, so
// between 2.61 and 3.61 s after the kill, by where in the advert interval
// the kill lands. advert-50ms/ does the same with VRRPv3 adverts every
// 50 ms (#24): 3 x 50 ms + skew = 180 ms after the last advert, between
// 130 and 180 ms after the kill, plus the takeover's own work.
func BenchmarkIPVSFailover(b *testing.B) {
	labtest.RequireIPVS(b)
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" {
		b.Fatal("set LVSLAB_BIN to a built lvslab")
	}
	const fast = 50 * time.Millisecond // VRRPv3's centiseconds (#24): 3 adverts and a skew, under a quarter second
	for _, impl := range []struct {
		name   string
		advert time.Duration
		new    func() scenarios.Implementation
	}{
		{"lvslab", 0, func() scenarios.Implementation { return &scenarios.GoDirector{Binary: bin} }},
		{"reference", 0, func() scenarios.Implementation { return &scenarios.Keepalived{} }},
		{"advert-50ms/lvslab", fast, func() scenarios.Implementation { return &scenarios.GoDirector{Binary: bin, Advert: fast} }},
		{"advert-50ms/reference", fast, func() scenarios.Implementation { return &scenarios.Keepalived{Advert: fast} }},
	} {
		b.Run(impl.name, func(b *testing.B) {
			var total time.Duration
			b.StopTimer()
			for range b.N {
				l, c := pairLab(b)
				c.Advert = impl.advert
				pair := impl.new()
				ctx := context.Background()
				if err := scenarios.StartBoth(ctx, pair, l, c, scenarios.FixFwmark); err != nil {
					b.Fatal(err)
				}
				if err := scenarios.WaitReady(ctx, l, c, 30*time.Second); err != nil {
					b.Fatal(err)
				}
				time.Sleep(1500 * time.Millisecond) // settled: the BACKUP has heard adverts
				b.StartTimer()
				took, err := scenarios.TimeVIPTakeover(ctx, l.Box(c.Directors[1].Node), c, func() error { return pair.Stop(0, false) })
				if err != nil {
					b.Fatal(err)
				}
				total += took
				b.StopTimer()
				for i := range c.Directors {
					pair.Stop(i, true)
				}
				l.Close()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "failover-ms")
		})
	}
}
