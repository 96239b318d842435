package director

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/director/internal/fake"
)

func TestHealthRiseFall(t *testing.T) {
	h := &Health{Rise: 2, Fall: 3}
	steps := []struct {
		ok          bool
		wantChanged bool
		wantUp      bool
	}{
		{false, false, true}, {false, false, true}, {true, false, true}, // a pass resets the fall count
		{false, false, true}, {false, false, true}, {false, true, false}, // three in a row: down
		{true, false, false}, {false, false, false}, {true, false, false}, {true, true, true}, // two in a row: up
	}
	for i, s := range steps {
		if changed := h.Observe(s.ok); changed != s.wantChanged || h.Up() != s.wantUp {
			t.Errorf("step %d (ok=%v): changed=%v up=%v, want %v %v", i, s.ok, changed, h.Up(), s.wantChanged, s.wantUp)
		}
	}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	probe, _ := NewProbe(CheckConfig{Type: "tcp", Timeout: time.Second}, ap.Addr(), int(ap.Port()))
	if err := probe(context.Background()); err != nil {
		t.Errorf("listening port: %v", err)
	}
	ln.Close()
	if err := probe(context.Background()); err == nil {
		t.Errorf("closed port: got no error")
	}
}

func TestDesiredWithDown(t *testing.T) {
	c, err := ParseConfig("c.yaml", []byte(strings.Replace(baseConfig, "      - address: 192.168.1.213",
		"      - address: 192.168.1.213\n        check: {on_fail: remove}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	f := fake.NewIPVS()
	Reconcile(f, nil, c.DesiredWith(map[[2]int]bool{{0, 0}: true, {0, 1}: true}))
	got, _ := Render(f)
	// .233 quiesces (default on_fail), .213 is removed.
	if want := "FWM 3 rr\n  -> 192.168.1.233:3306 Route 0\n"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
