package director

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvslab/lvslab/director/internal/fake"

	"github.com/coreos/go-iptables/iptables"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// d2Guard is the seed's rule on d2: mark 4 unless from d1's MAC.
func d2Guard() Guard {
	mac, _ := net.ParseMAC("02:00:c0:a8:01:e9")
	return Guard{VIP: netip.MustParseAddr("192.168.1.200"), Port: 3306, Protocol: "tcp", PeerMAC: mac, Mark: 4, Mask: 0x7}
}

func TestEnsureGuardIdempotent(t *testing.T) {
	f := fake.NewIPTables()
	changed, err := ensureGuard(f, d2Guard())
	if err != nil || !changed {
		t.Fatalf("first ensure: changed=%v, %v; want a change", changed, err)
	}
	golden(t, "guard-d2.golden", f.Save(GuardTable))
	calls := f.Calls
	if changed, err := ensureGuard(f, d2Guard()); err != nil || changed || f.Calls != calls {
		t.Errorf("second ensure: changed=%v, %v, %d mutating calls; want a no-op", changed, err, f.Calls-calls)
	}
	// A new peer MAC (learned from VRRP) replaces the rule: still one.
	g := d2Guard()
	g.PeerMAC, _ = net.ParseMAC("02:00:00:00:00:99")
	if changed, err := ensureGuard(f, g); err != nil || !changed {
		t.Fatalf("new peer MAC: changed=%v, %v", changed, err)
	}
	if list, _ := f.List(GuardTable, GuardChain); len(list) != 2 || !strings.Contains(list[1], "02:00:00:00:00:99") {
		t.Errorf("chain after MAC change: %q, want one rule with the new MAC", list)
	}
	if err := removeGuard(f); err != nil {
		t.Fatal(err)
	}
	if got := f.Save(GuardTable); got != "*mangle\n\nCOMMIT\n" {
		t.Errorf("after remove: %q, want an empty table", got)
	}
	if err := removeGuard(f); err != nil {
		t.Errorf("second remove: %v, want nothing to do", err)
	}
}

// TestGuardWithRealIPTables installs the guard with go-iptables inside a
// lab namespace (iptables-nft with xt_mac: no IPVS needed) and reads it
// back with iptables-save as an independent observer.
func TestGuardWithRealIPTables(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "iptables", "iptables")
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	box := l.Box("d2")
	ensure := func() (changed bool) {
		t.Helper()
		err := box.Do(func() error {
			ipt, err := iptables.New()
			if err == nil {
				changed, err = ensureGuard(ipt, d2Guard())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return changed
	}
	if !ensure() {
		t.Errorf("first ensure changed nothing")
	}
	if ensure() {
		t.Errorf("second ensure changed something, want a no-op")
	}
	save := func() string {
		out, err := exec.Command("ip", "netns", "exec", box.Path()[len(lab.NetnsDir)+1:], "iptables-save", "-t", "mangle").Output()
		if err != nil {
			t.Fatalf("iptables-save: %v", err)
		}
		return string(out)
	}
	got := save()
	// iptables-nft prints MACs in lower case, iptables-legacy in upper.
	for _, want := range []string{"-A PREROUTING -j LVSLAB-GUARD", "-d 192.168.1.200/32 -p tcp", "--dport 3306",
		"! --mac-source 02:00:c0:a8:01:e9", "-j MARK --set-xmark 0x4/0x7"} {
		if !strings.Contains(strings.ToLower(got), strings.ToLower(want)) {
			t.Errorf("iptables-save lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "-A LVSLAB-GUARD") != 1 {
		t.Errorf("want exactly one guard rule:\n%s", got)
	}
	remove := func() error {
		return box.Do(func() error {
			ipt, err := iptables.New()
			if err == nil {
				err = removeGuard(ipt)
			}
			return err
		})
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if got := save(); strings.Contains(got, GuardChain) {
		t.Errorf("after RemoveGuard:\n%s", got)
	}
	if err := remove(); err != nil {
		t.Errorf("RemoveGuard with nothing to remove: %v", err)
	}
}

func TestGuardRuleWithoutPeerMarksAll(t *testing.T) {
	g := Guard{VIP: netip.MustParseAddr("192.168.1.200"), Port: 3306, Protocol: "tcp", Mark: 3, Mask: 0x3}
	if got, want := strings.Join(g.Rule(), " "), "-d 192.168.1.200/32 -p tcp --dport 3306 -j MARK --set-xmark 0x3/0x3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRunWithoutIPVS: where the kernel has no IPVS, the director says so
// and installs nothing (moby/ipvs alone would carry on silently).
func TestRunWithoutIPVS(t *testing.T) {
	if why, _ := labtest.MissingIPVS(); why == "" {
		t.Skip("this kernel has IPVS")
	}
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	cfg, err := ParseConfigFile("../fixtures/director/d1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Status.Socket = filepath.Join(t.TempDir(), "d1.sock")
	box := l.Box("d1")
	err = box.Do(func() error { return Run(context.Background(), cfg, slog.New(slog.DiscardHandler)) })
	if err == nil || !strings.Contains(err.Error(), "kernel IPVS is not available") {
		t.Fatalf("got %v, want 'kernel IPVS is not available'", err)
	}
	out, err := exec.Command("ip", "netns", "exec", box.Path()[len(lab.NetnsDir)+1:], "iptables-save", "-t", "mangle").Output()
	if err != nil || !strings.Contains(string(out), "*mangle") {
		t.Fatalf("iptables-save -t mangle in d1: %v, output %q", err, out)
	}
	if strings.Contains(string(out), GuardChain) {
		t.Errorf("guard installed anyway:\n%s", out)
	}
}
