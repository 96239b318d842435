package director

import (
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lvslab/lvslab/director/internal/fake"
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
		keys = append(keys, FromKernel(s).Key())
	}
	if diff := cmp.Diff([]string{"FWM 3", "TCP 192.168.1.50:80"}, keys, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" || c.ServicesDeleted != 2 {
		t.Errorf("after the restart (%+v), services (-want +got):\n%s", c, diff)
	}
}

// TestParseProcTable reads /proc/net/ip_vs as ip_vs_info_seq_show prints
// it: address and fwmark services, ops and persistence flags, IPv6.
func TestParseProcTable(t *testing.T) {
	text := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  C0A801C8:0CEA rr 
  -> C0A801E9:0CEA      Route   1      0          0         
  -> C0A801D5:0CEA      Route   0      2          1         
UDP  C0A801C8:0035 sh ops 
FWM  00000003 wlc persistent 300 FFFFFFFF
  -> C0A801E9:0000      Masq    5      0          0         
TCP  [2001:db8::40]:01BB mh 
  -> [2001:db8::43]:01BB      Tunnel  2      0          0         
`
	got, err := parseProcTable([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	vip, v6 := netip.MustParseAddr("192.168.1.200"), netip.MustParseAddr("2001:db8::40")
	d1, d2 := netip.MustParseAddr("192.168.1.233"), netip.MustParseAddr("192.168.1.213")
	want := []Service{
		{Protocol: "tcp", VIP: vip, Port: 3306, Scheduler: "rr", Dests: []Dest{{d1, 3306, 1, Route}, {d2, 3306, 0, Route}}},
		{Protocol: "udp", VIP: vip, Port: 53, Scheduler: "sh"},
		{Mark: 3, Scheduler: "wlc", Persistence: 300, Dests: []Dest{{d1, 0, 5, Masq}}},
		{Protocol: "tcp", VIP: v6, Port: 443, Scheduler: "mh", Dests: []Dest{{netip.MustParseAddr("2001:db8::43"), 443, 2, Tunnel}}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("parsed table (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"  -> C0A801E9:0CEA Route 1 0 0", "TCP  C0A801C8 rr", "FWM  zz rr", "TCP  C0A801C8:0CEA rr persistent x FFFFFFFF"} {
		if _, err := parseProcTable([]byte("h\nh\nh\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 4") {
			t.Errorf("%q: err %v, want one naming line 4", bad, err)
		}
	}
}
