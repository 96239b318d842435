package director_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
	"github.com/moby/ipvs"
)

// TestIPVSDirectorPair runs two directors in a lab, lvslab with lvslab and
// lvslab with keepalived 2.2 in both orders: they elect one MASTER, the VIP
// moves on a SIGKILL of the MASTER and comes back when it restarts
// (preempt), the fwmark guard excludes the MAC learned from the peer's
// adverts, and a clean stop leaves nothing behind.
func TestIPVSDirectorPair(t *testing.T) {
	labtest.RequireIPVS(t)
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" {
		t.Fatal("set LVSLAB_BIN to a built lvslab (make test does)")
	}
	lvslab := func() scenarios.Implementation { return &scenarios.GoDirector{Binary: bin, LearnPeerMAC: true} }
	keepalived := func() scenarios.Implementation { return &scenarios.Keepalived{} }
	for _, pair := range []scenarios.Mixed{
		{lvslab(), lvslab()},
		{lvslab(), keepalived()},
		{keepalived(), lvslab()},
	} {
		t.Run(pair.Name(), func(t *testing.T) { testPair(t, pair) })
	}
}

// pairLab builds the default two-director lab without MariaDB, with a TCP
// listener on the MySQL port in each director box so health checks pass.
func pairLab(tb testing.TB) (*lab.Lab, scenarios.Cluster) {
	l := labtest.DirectorLab(tb)
	c, err := scenarios.NewCluster(l.Topo)
	if err != nil {
		tb.Fatal(err)
	}
	return l, c
}

func testPair(t *testing.T, pair scenarios.Mixed) {
	l, c := pairLab(t)
	ctx := context.Background()
	defer func() {
		if t.Failed() {
			for node, log := range pair.Logs() {
				t.Logf("--- %s's director log ---\n%s", node, log)
			}
		}
	}()
	master := func(want int) {
		t.Helper()
		err := scenarios.WaitFor(ctx, 15*time.Second, func() string {
			if why := scenarios.HoldsVIP(l.Box(c.Directors[want].Node), c); why != "" {
				return why
			}
			if scenarios.HoldsVIP(l.Box(c.Directors[1-want].Node), c) == "" {
				return c.Directors[1-want].Node + " holds the VIP too"
			}
			return ""
		})
		if err != nil {
			t.Fatalf("want %s the only MASTER: %v", c.Directors[want].Node, err)
		}
	}
	// The MASTER first, so the BACKUP starts hearing it: otherwise which
	// of them hears the other first is a race of start times.
	if err := pair.Start(ctx, l, c, 0, scenarios.FixFwmark); err != nil {
		t.Fatal(err)
	}
	if err := scenarios.WaitFor(ctx, 15*time.Second, func() string { return scenarios.HoldsVIP(l.Box(c.Directors[0].Node), c) }); err != nil {
		t.Fatal(err)
	}
	if err := pair.Start(ctx, l, c, 1, scenarios.FixFwmark); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // past the BACKUP's Master_Down_Interval: still one MASTER
	master(0)
	// Learning: the BACKUP knows the MASTER's MAC from its adverts; the
	// MASTER, which hears no adverts, from the neighbour table (the peer is
	// the other realserver).
	guards := func(macs [2]net.HardwareAddr) {
		t.Helper()
		for i, impl := range pair {
			if impl.Name() == "lvslab" {
				expectGuard(t, l.Box(c.Directors[i].Node), c, i, macs[i])
			}
		}
	}
	guards([2]net.HardwareAddr{c.Directors[1].MAC, c.Directors[0].MAC})
	for i, impl := range pair {
		if gd, ok := impl.(*scenarios.GoDirector); ok {
			expectStatus(t, l, c, gd, i)
		}
	}

	// The MASTER dies; the BACKUP takes over within Master_Down_Interval
	// (3.6 s here), and the MASTER's VIP stays on its dead box's interface,
	// so only the new MASTER is checked until the restart.
	t0 := time.Now()
	if err := pair.Stop(0, false); err != nil {
		t.Fatal(err)
	}
	if err := scenarios.WaitFor(ctx, 15*time.Second, func() string { return scenarios.HoldsVIP(l.Box(c.Directors[1].Node), c) }); err != nil {
		t.Fatalf("after SIGKILL of %s's %s: %v", c.Directors[0].Node, pair[0].Name(), err)
	}
	t.Logf("%s → %s failover on SIGKILL: %s", pair[0].Name(), pair[1].Name(), time.Since(t0).Round(time.Millisecond))
	// Restarted, it adopts what the crash left, and preempts.
	t0 = time.Now()
	if err := pair.Start(ctx, l, c, 0, scenarios.FixFwmark); err != nil {
		t.Fatal(err)
	}
	master(0)
	t.Logf("%s → %s failback on restart: %s", pair[1].Name(), pair[0].Name(), time.Since(t0).Round(time.Millisecond))
	guards([2]net.HardwareAddr{c.Directors[1].MAC, c.Directors[0].MAC})

	for i := range pair {
		if err := pair.Stop(i, true); err != nil {
			t.Errorf("stop %s: %v", c.Directors[i].Node, err)
		}
	}
	for i, impl := range pair {
		if impl.Name() == "lvslab" {
			expectNothingLeft(t, l.Box(c.Directors[i].Node), c)
		}
	}
}

// expectGuard checks that director i's guard excludes mac (none: marks
// all) and its IPVS table declares the service by its mark.
func expectGuard(t *testing.T, box *lab.Box, c scenarios.Cluster, i int, mac net.HardwareAddr) {
	t.Helper()
	mark := uint32(c.Directors[i].Mark)
	g := director.Guard{VIP: c.VIP, Port: uint16(c.Port), Protocol: "tcp", PeerMAC: mac, Mark: mark, Mask: director.DefaultMask(mark)}
	err := scenarios.WaitFor(context.Background(), 5*time.Second, func() string {
		var ok bool
		err := box.Do(func() error {
			ipt, err := iptables.New()
			if err == nil {
				ok, err = ipt.Exists(director.GuardTable, director.GuardChain, g.Rule()...)
			}
			return err
		})
		if err != nil || !ok {
			return "no rule " + strings.Join(g.Rule(), " ") + " in " + box.Name
		}
		return ""
	})
	if err != nil {
		t.Errorf("guard learned from adverts: %v", err)
	}
	h, err := ipvs.New(box.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got, err := director.Render(h)
	want := "FWM " + strconv.Itoa(c.Directors[i].Mark) + " rr\n  -> 192.168.1.213:3306 Route 1\n  -> 192.168.1.233:3306 Route 1\n"
	if err != nil || got != want {
		t.Errorf("%s's IPVS table:\n%s(%v)\nwant\n%s", box.Name, got, err, want)
	}
}

// expectStatus reads director i's status socket and metrics.
func expectStatus(t *testing.T, l *lab.Lab, c scenarios.Cluster, gd *scenarios.GoDirector, i int) {
	t.Helper()
	st, err := director.ReadStatus(context.Background(), gd.StatusSocket(l, i, c))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"MASTER", "BACKUP"}[i]
	if st.State != want || st.VRID != c.VRID || len(st.Services) != 1 || len(st.Services[0].Realservers) != 2 {
		t.Errorf("%s's status: %+v, want %s with one service of two realservers", c.Directors[i].Node, st, want)
	}
	for _, r := range st.Services[0].Realservers {
		if !r.Up || !r.InKernel || r.Weight != 1 || r.Check != "ok" {
			t.Errorf("%s's status of %s: %+v, want up, checked ok, weight 1", c.Directors[i].Node, r.Address, r)
		}
	}
	if i == 1 && (st.Master != c.Directors[0].Addr.String() || st.Guard.PeerMAC != c.Directors[0].MAC.String() || st.Guard.PeerMACFrom != "adverts") {
		t.Errorf("BACKUP's status: master %q, peer MAC %q from %q; want %s, %s from adverts",
			st.Master, st.Guard.PeerMAC, st.Guard.PeerMACFrom, c.Directors[0].Addr, c.Directors[0].MAC)
	}
	if i == 0 && (st.Guard.PeerMAC != c.Directors[1].MAC.String() || st.Guard.PeerMACFrom != "neighbour") {
		t.Errorf("MASTER's status: peer MAC %q from %q; want %s from neighbour", st.Guard.PeerMAC, st.Guard.PeerMACFrom, c.Directors[1].MAC)
	}
	// Metrics on the box's loopback.
	hc := &http.Client{Transport: &http.Transport{DialContext: l.Box(c.Directors[i].Node).DialContext}}
	resp, err := hc.Get("http://127.0.0.1:9101/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	state := []string{"2", "1"}[i]
	for _, m := range []string{
		`lvslab_vrrp_state{interface="eth0",vrid="51"} ` + state,
		`lvslab_realserver_up{realserver="192.168.1.233:3306",service="FWM ` + strconv.Itoa(c.Directors[i].Mark) + `"} 1`,
	} {
		if !strings.Contains(string(body), m) {
			t.Errorf("%s's metrics lack %q:\n%s", c.Directors[i].Node, m, body)
		}
	}
}

// expectNothingLeft checks that a director stopped cleanly: no VIP on its
// interface, no IPVS service, no guard chain, no sync daemon.
func expectNothingLeft(t *testing.T, box *lab.Box, c scenarios.Cluster) {
	t.Helper()
	if scenarios.HoldsVIP(box, c) == "" {
		t.Errorf("%s: the VIP is still on its interface", box.Name)
	}
	h, err := ipvs.New(box.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got, err := director.Render(h); got != "" || err != nil {
		t.Errorf("%s: IPVS left behind: %q %v", box.Name, got, err)
	}
	err = box.Do(func() error {
		ipt, err := iptables.New()
		if err != nil {
			return err
		}
		if ok, err := ipt.ChainExists(director.GuardTable, director.GuardChain); err != nil || ok {
			return errors.Join(err, errors.New("chain "+director.GuardChain+" left behind"))
		}
		ds, err := director.SyncDaemons()
		if err == nil && len(ds) > 0 {
			err = errors.New("sync daemons left behind")
		}
		return err
	})
	if err != nil {
		t.Errorf("%s: %v", box.Name, err)
	}
}
