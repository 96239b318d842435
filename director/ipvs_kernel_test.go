package director

import (
	"github.com/lvslab/lvslab/director/fake"
	"testing"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/moby/ipvs"
)

// TestIPVSReconcileMatchesKernel runs the same reconciles against kernel
// IPVS in a lab namespace (through `lvslab kexec` in make test) and against
// the fake: the rendered tables must be equal, which keeps the fake honest.
func TestIPVSReconcileMatchesKernel(t *testing.T) {
	labtest.RequireIPVS(t)
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	h, err := ipvs.New(l.Box("d1").Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fake := fake.NewIPVS()
	quiesced := seed(3)
	quiesced[0].Dests[1].Weight = 0
	steps := [][]Service{seed(0), seed(3), quiesced, nil}
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
