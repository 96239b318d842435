package director

import (
	"net/netip"
	"testing"

	"github.com/lvslab/lvslab/director/internal/fake"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// TestIPVSReconcileMatchesKernel runs the same reconciles against kernel
// IPVS in a lab namespace (through `lvslab kexec` in make test) and against
// the fake: the rendered tables must be equal, which keeps the fake honest.
func TestIPVSReconcileMatchesKernel(t *testing.T) {
	labtest.RequireIPVS(t)
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	h := openKernel(t, l.Box("d1"))
	fake := fake.NewIPVS()
	quiesced := seed(3)
	quiesced[0].Dests[1].Weight = 0
	persistent := append(seed(0), Service{Protocol: "udp", VIP: netip.MustParseAddr("192.168.1.200"), Port: 53, Scheduler: "sh", Persistence: 300,
		Dests: []Dest{{Addr: netip.MustParseAddr("192.168.1.213"), Port: 53, Weight: 7, Forward: Masq}}})
	steps := [][]Service{seed(0), seed(3), quiesced, persistent, nil}
	var prev []Service
	for i, want := range steps {
		ck, err := Reconcile(h, prev, want)
		if err != nil {
			t.Fatalf("step %d, kernel: %v", i, err)
		}
		cf, _ := Reconcile(fake, prev, want)
		if ck != cf {
			t.Errorf("step %d: kernel changes %+v, fake %+v", i, ck, cf)
		}
		gk, _ := Render(h)
		if gd, _ := Render(h.Handle); gd != gk {
			t.Errorf("step %d: /proc/net/ip_vs reads\n%s\nnetlink dumps read\n%s", i, gk, gd)
		}
		gf, _ := Render(fake)
		if gk != gf {
			t.Errorf("step %d: kernel table\n%s\nfake table\n%s", i, gk, gf)
		}
		if c, err := Reconcile(h, want, want); err != nil || !c.None() {
			t.Errorf("step %d: second reconcile on the kernel: %+v, %v; want a no-op", i, c, err)
		}
		prev = want
	}
	if got, _ := Render(h); got != "" {
		t.Errorf("after reconciling to nothing: %q, want an empty table", got)
	}
}

// openKernel opens kernel IPVS in box's namespace, closed at the end of
// the test.
func openKernel(t testing.TB, box *lab.Box) *Kernel {
	t.Helper()
	var k *Kernel
	if err := box.Do(func() (err error) { k, err = OpenKernel(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}
