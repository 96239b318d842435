package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lvslab/lvslab/scenarios/collect"
)

// writeBundle writes a bundle as lvslab collect would for a box of the
// reference pair: its config, its address and MAC on eth0.
func writeBundle(t *testing.T, dir, conf, addr, mac string) string {
	t.Helper()
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	onBox := "/etc/keepalived/keepalived.conf"
	b := &collect.Bundle{Format: 1, Config: onBox, Kernel: "6.1.0-57-amd64", Keepalived: "Keepalived v2.2.7",
		Addrs: []collect.Addr{{Link: "lo", Prefix: "127.0.0.1/8"}, {Link: "eth0", Prefix: addr + "/24"}},
		Links: []collect.Link{{Index: 1, Name: "lo", Up: true}, {Index: 2, Name: "eth0", MAC: mac, Up: true}},
		Live:  collect.Live{VIPs: []string{"192.168.1.200"}}}
	b.AddFile(collect.FileName(onBox), onBox, data, nil)
	b.AddFile("iptables.rules", "iptables-save", []byte("*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"), nil)
	p := filepath.Join(dir, filepath.Base(conf)+".tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := b.Write(f); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckFromBundles: check on the boxes' bundles prescribes what check
// on their configs, told each box's address and MAC by hand, does, and
// says the diagnosis first.
func TestCheckFromBundles(t *testing.T) {
	ref := "../../fixtures/check/reference/"
	dir := t.TempDir()
	b1 := writeBundle(t, dir, ref+"db1.conf", "192.168.1.233", "02:00:c0:a8:01:e9")
	b2 := writeBundle(t, dir, ref+"db2.conf", "192.168.1.213", "02:00:c0:a8:01:d5")
	fromBundles, stderr, code := cli(t, "check", "--plan", b1, b2)
	byHand, _, codeByHand := cli(t, "check", "--plan", "--addr", "d1=192.168.1.233", "--addr", "d2=192.168.1.213",
		"--mac", "d1=02:00:c0:a8:01:e9", "--mac", "d2=02:00:c0:a8:01:d5", ref+"db1.conf", ref+"db2.conf")
	rules := func(out string) []string {
		var r []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "iptables ") {
				r = append(r, strings.TrimSpace(l))
			}
		}
		return r
	}
	if code != codeByHand || len(rules(fromBundles)) != 2 || !slices.Equal(rules(fromBundles), rules(byHand)) {
		t.Errorf("from bundles: exit %d, %q; by hand: exit %d, %q; want the same rules (stderr %s)", code, rules(fromBundles), codeByHand, rules(byHand), stderr)
	}
	diag := strings.Index(fromBundles, "the two-box loop, by the configs")
	if diag < 0 || diag > strings.Index(fromBundles, "The fix") || !strings.Contains(fromBundles, "Linux 6.1.0-57-amd64") ||
		strings.Contains(fromBundles, "lvslab-check-") {
		t.Errorf("from bundles, want the boxes and the diagnosis first, paths as on the boxes:\n%s", fromBundles)
	}
	if _, stderr, code := cli(t, "check", "--plan", "--mac", "d1=02:00:00:00:00:01", b1, b2); code != 2 || !strings.Contains(stderr, "come from the bundles") {
		t.Errorf("--mac with bundles: exit %d, %q; want 2", code, stderr)
	}
	if _, stderr, code := cli(t, "check", "--plan", ref+"db1.conf", b2); code != 2 || !strings.Contains(stderr, "every box as a bundle") {
		t.Errorf("a bundle and a config: exit %d, %q; want 2", code, stderr)
	}
}
