package director

import (
	"github.com/lvslab/lvslab/director/fake"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/moby/ipvs"
)

// seed is the two-box cluster's table: VIP:3306 (the seed's first variant)
// or FWM 3 (its fix), rr, DR to both boxes.
func seed(mark uint32) []Service {
	dests := []Dest{
		{Addr: netip.MustParseAddr("192.168.1.233"), Port: 3306, Weight: 1, Forward: Route},
		{Addr: netip.MustParseAddr("192.168.1.213"), Port: 3306, Weight: 1, Forward: Route},
	}
	return []Service{{Protocol: "tcp", VIP: netip.MustParseAddr("192.168.1.200"), Port: 3306, Mark: mark, Scheduler: "rr", Dests: dests}}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	labtest.Golden(t, "../fixtures/golden/"+name, got)
}

func TestReconcileFromEmptyAndNoop(t *testing.T) {
	for _, tc := range []struct {
		name string
		mark uint32
	}{{"ipvs-vip.golden", 0}, {"ipvs-fwmark.golden", 3}} {
		f := fake.NewIPVS()
		c, err := Reconcile(f, nil, seed(tc.mark))
		if err != nil {
			t.Fatal(err)
		}
		if want := (Changes{ServicesAdded: 1, DestsAdded: 2}); c != want {
			t.Errorf("%s from empty: got %+v, want %+v", tc.name, c, want)
		}
		if f.Reads != 1 {
			t.Errorf("%s from empty: %d listings; want 1 (a new service has no destinations to list)", tc.name, f.Reads)
		}
		got, _ := Render(f)
		golden(t, tc.name, got)
		calls := f.Calls
		if c, err := Reconcile(f, seed(tc.mark), seed(tc.mark)); err != nil || !c.None() || f.Calls != calls {
			t.Errorf("second reconcile: %+v, %v, %d mutating calls; want a no-op", c, err, f.Calls-calls)
		}
	}
}

func TestReconcileChangesOnlyWhatDiffers(t *testing.T) {
	f := fake.NewIPVS()
	// Someone else's service: never touched.
	foreign := &ipvs.Service{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP, Address: net.ParseIP("10.0.0.1"), Port: 80, SchedName: "wlc"}
	f.NewService(foreign)
	Reconcile(f, nil, seed(0))

	next := seed(0)
	next[0].Scheduler = "wlc"
	next[0].Dests[1].Weight = 0                                                                               // quiesced
	next[0].Dests[0] = Dest{Addr: netip.MustParseAddr("192.168.1.50"), Port: 3306, Weight: 1, Forward: Route} // replaced
	c, err := Reconcile(f, seed(0), next)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Changes{ServicesUpdated: 1, DestsAdded: 1, DestsUpdated: 1, DestsDeleted: 1}); c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	// Moving from VIP:port to fwmark deletes the owned VIP service.
	c, err = Reconcile(f, next, seed(3))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Changes{ServicesAdded: 1, ServicesDeleted: 1, DestsAdded: 2}); c != want {
		t.Errorf("to fwmark: got %+v, want %+v", c, want)
	}
	got, _ := Render(f)
	want := "FWM 3 rr\n  -> 192.168.1.213:3306 Route 1\n  -> 192.168.1.233:3306 Route 1\nTCP 10.0.0.1:80 wlc\n"
	if got != want {
		t.Errorf("table (-want +got):\n%s", cmp.Diff(want, got))
	}
}

func TestReconcileReportsKernelErrors(t *testing.T) {
	f := fake.NewIPVS()
	bad := seed(0)
	bad[0].Dests = append(bad[0].Dests, bad[0].Dests[0]) // a duplicate: EEXIST from the table
	_, err := Reconcile(f, nil, bad)
	if err == nil {
		t.Fatal("got no error for a duplicate destination")
	}
}

// TestDaemonOwnsItsVIPs: a director restarted with the fwmark guard
// removes the VIP:port service an earlier run (guard none) left, and any
// other address service on its VIP, and leaves other VIPs' services alone.
func TestDaemonOwnsItsVIPs(t *testing.T) {
	f := fake.NewIPVS()
	other := Service{Protocol: "tcp", VIP: netip.MustParseAddr("192.168.1.50"), Port: 80, Scheduler: "rr"}
	udp := Service{Protocol: "udp", VIP: netip.MustParseAddr("192.168.1.200"), Port: 53, Scheduler: "rr"}
	if _, err := Reconcile(f, nil, append(seed(0), other, udp)); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("c.yaml", []byte(baseConfig)) // fwmark guard, mark 3
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: cfg, ipvs: f, vips: []netip.Addr{netip.MustParseAddr("192.168.1.200")}}
	c, err := d.Reconcile()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	svcs, _ := f.GetServices()
	for _, s := range svcs {
		keys = append(keys, serviceKey(s))
	}
	if diff := cmp.Diff([]string{"FWM 3", "TCP 192.168.1.50:80"}, keys, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" || c.ServicesDeleted != 2 {
		t.Errorf("after the restart (%+v), services (-want +got):\n%s", c, diff)
	}
}
