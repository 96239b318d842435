package kernel_test

import (
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/moby/ipvs"
)

// TestIPVSServiceInNetns needs kernel IPVS: `make test` runs it through
// `lvslab kexec`, in a micro-VM where the host has no ip_vs.
func TestIPVSServiceInNetns(t *testing.T) {
	labtest.RequireIPVS(t)
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	h, err := ipvs.New(l.Box("d1").Path())
	if err != nil {
		t.Fatalf("ipvs handle in d1: %v", err)
	}
	defer h.Close()
	svc := &ipvs.Service{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP,
		Address: net.ParseIP("192.168.1.200"), Port: 3306, SchedName: "rr", Netmask: 0xffffffff}
	if err := h.NewService(svc); err != nil {
		t.Fatalf("add service: %v", err)
	}
	dst := &ipvs.Destination{Address: net.ParseIP("192.168.1.213"), Port: 3306, Weight: 1, ConnectionFlags: ipvs.ConnectionFlagDirectRoute}
	if err := h.NewDestination(svc, dst); err != nil {
		t.Fatalf("add destination: %v", err)
	}
	got, err := h.GetServices()
	if err != nil || len(got) != 1 {
		t.Fatalf("read back: got %d services (%v), want 1", len(got), err)
	}
	if !got[0].Address.Equal(svc.Address) || got[0].Port != 3306 || got[0].SchedName != "rr" {
		t.Errorf("read back: got %s:%d %s, want 192.168.1.200:3306 rr", got[0].Address, got[0].Port, got[0].SchedName)
	}
	dsts, err := h.GetDestinations(got[0])
	if err != nil || len(dsts) != 1 || !dsts[0].Address.Equal(dst.Address) || dsts[0].ConnectionFlags&ipvs.ConnectionFlagFwdMask != ipvs.ConnectionFlagDirectRoute {
		t.Errorf("destinations: got %+v (%v), want 192.168.1.213:3306 by direct routing", dsts, err)
	}
	// IPVS tables are per namespace: d2 sees none of d1's.
	h2, err := ipvs.New(l.Box("d2").Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if other, _ := h2.GetServices(); len(other) != 0 {
		t.Errorf("d2 sees %d services, want 0", len(other))
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		t.Errorf("ip_vs loaded but /proc/net/ip_vs missing: %v", err)
	}
	if info, _ := kernel.Detect(""); info.Mode != kernel.Native {
		t.Errorf("inside the IPVS kernel: runner %s (%s), want native", info.Mode, info.Reason)
	}
}
