package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lvslab/lvslab/fixtures/field"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/scenarios/check"
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
	if err := b.WriteFile(p); err != nil {
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
	if code != codeByHand || len(rules(fromBundles)) != 4 || !slices.Equal(rules(fromBundles), rules(byHand)) {
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

// TestVMKernelForBundles: the lab boots the cached kernel of the boxes'
// series, else the nearest, and says which; --vm-kernel wins.
func TestVMKernelForBundles(t *testing.T) {
	cached := func(versions ...string) []kernel.Listed {
		var out []kernel.Listed
		for _, v := range versions {
			out = append(out, kernel.Listed{Kernel: &kernel.Kernel{Version: v}})
		}
		return out
	}
	for _, tc := range []struct {
		boxes, flag string
		cached      []kernel.Listed
		want, says  string
	}{
		{"5.10.0-30-amd64", "", cached("5.10.0-32-amd64", "6.1.0-57-amd64", "6.12.117+deb13-amd64"), "5.10.0-32-amd64", "of the same series"},
		{"4.18.0-513.el8.x86_64", "", cached("5.10.0-32-amd64", "6.1.0-57-amd64"), "5.10.0-32-amd64", "the nearest cached"},
		{"6.1.0-20-amd64", "", cached("6.12.117+deb13-amd64"), "6.12.117+deb13-amd64", "fetch --suite bookworm"},
		{"6.1.0-20-amd64", "bullseye", cached("6.1.0-57-amd64"), "bullseye", "(--vm-kernel)"},
	} {
		in := &bundleInputs{kernels: []string{tc.boxes}}
		v := &vmFlags{vmKernel: tc.flag}
		says := in.vmKernel(v, tc.cached)
		if v.vmKernel != tc.want || !strings.Contains(says, tc.says) {
			t.Errorf("boxes %s, cached %v: boots %q, says %q; want %q, %q", tc.boxes, tc.cached, v.vmKernel, says, tc.want, tc.says)
		}
	}
}

// TestCheckFromBundlesField: on every pair of the field corpus, check
// --plan on bundles made of each box's files says what check --plan on
// the configs, rules and scripts says with each box's address and MAC
// given by hand: the same lab, the same fix.
func TestCheckFromBundlesField(t *testing.T) {
	root := "../../fixtures/field"
	cases, err := field.Read("../../docs/field.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		configs, rules, scripts := c.Files(root)
		if len(configs) != 2 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			p, err := check.LoadPair(configs, rules)
			if err != nil {
				t.Fatal(err)
			}
			pl, err := check.Derive(p)
			if err != nil {
				if _, refused := c.Refused(); refused {
					return // refused as configs: nothing to compare
				}
				t.Fatal(err)
			}
			dir := t.TempDir()
			byHand := []string{"check", "--plan"}
			var bundles []string
			for i, b := range pl.Boxes {
				var rule string
				if i < len(rules) {
					rule = rules[i]
					byHand = append(byHand, "--iptables", rule)
				}
				byHand = append(byHand, "--addr", b.Node+"="+b.Addr.String(), "--mac", b.Node+"="+b.MAC)
				bundles = append(bundles, fieldBundle(t, dir, configs[i], rule, scripts, b.Addr.String(), b.MAC))
			}
			if scripts != "" {
				byHand = append(byHand, "--scripts", scripts)
			}
			want, _, wantCode := cli(t, append(byHand, configs...)...)
			got, stderr, code := cli(t, append([]string{"check", "--plan"}, bundles...)...)
			var paths []string // a rules file, as the bundle shows it
			for i, r := range rules {
				paths = append(paths, r, filepath.Base(bundles[i])+"/iptables.rules")
			}
			abs, _ := filepath.Abs(filepath.Join(root, c.Name))
			paths = append(paths, filepath.Join(root, c.Name), "/etc/keepalived", abs, "/etc/keepalived")
			want = strings.NewReplacer(paths...).Replace(want)
			if i := strings.Index(got, "Your configuration"); i >= 0 {
				got = got[i:]
			}
			if i := strings.Index(want, "Your configuration"); i >= 0 {
				want = want[i:]
			}
			if code != wantCode || got != want {
				t.Errorf("from bundles: exit %d (stderr %q), by hand: exit %d; outputs differ:\n%s", code, stderr, wantCode, lineDiff(want, got))
			}
		})
	}
}

// fieldBundle writes a bundle of a field case's box: its config with the
// case's other configs beside it in /etc/keepalived, its rules, the
// case's scripts.
func fieldBundle(t *testing.T, dir, conf, rules, scripts, addr, mac string) string {
	t.Helper()
	read := func(p string) []byte {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	onBox := "/etc/keepalived/" + filepath.Base(conf)
	b := &collect.Bundle{Format: 1, Config: onBox, Kernel: "6.1.0-57-amd64",
		Addrs: []collect.Addr{{Link: "lo", Prefix: "127.0.0.1/8"}, {Link: "eth0", Prefix: addr + "/24"}},
		Links: []collect.Link{{Index: 1, Name: "lo", Up: true}, {Index: 2, Name: "eth0", MAC: mac, Up: true}}}
	others, _ := filepath.Glob(filepath.Join(filepath.Dir(conf), "*.conf"))
	for _, o := range others {
		b.AddFile(collect.FileName("/etc/keepalived/"+filepath.Base(o)), "/etc/keepalived/"+filepath.Base(o), read(o), nil)
	}
	if rules != "" {
		b.AddFile("iptables.rules", "iptables-save", read(rules), nil)
	}
	if scripts != "" {
		names, _ := filepath.Glob(filepath.Join(scripts, "*"))
		for _, n := range names {
			b.AddFile(collect.FileName("/etc/keepalived/"+filepath.Base(n)), "/etc/keepalived/"+filepath.Base(n), read(n), nil)
		}
	}
	p := filepath.Join(dir, strings.TrimSuffix(filepath.Base(conf), ".conf")+".tar.gz")
	if err := b.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// lineDiff lists the lines of got that want lacks, and the other way.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
