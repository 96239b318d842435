package diagnose

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/fixtures/field"
	"github.com/lvslab/lvslab/scenarios/check"
	"github.com/lvslab/lvslab/scenarios/collect"
)

// box is a director box of the tests, as collect would have read it.
type box struct {
	name, conf, rules string // fixture paths; rules "" for none
	addr, mac         string
	vipOnLo           bool
	sysctls           map[string]string
	samples           []collect.Sample
}

// bundle writes b as collect would (a .tar.gz) under dir and returns its
// path.
func (b box) bundle(t testing.TB, dir string) string {
	t.Helper()
	addrs := []collect.Addr{{Link: "lo", Prefix: "127.0.0.1/8"}, {Link: "eth0", Prefix: b.addr + "/24"}}
	if b.vipOnLo {
		addrs = append(addrs, collect.Addr{Link: "lo", Prefix: "192.168.1.200/32"})
	}
	onBox := "/etc/keepalived/" + filepath.Base(b.conf)
	bd := &collect.Bundle{Format: 1, Config: onBox, Sysctls: b.sysctls, Addrs: addrs,
		Links: []collect.Link{{Index: 1, Name: "lo", Up: true}, {Index: 2, Name: "eth0", MAC: b.mac, Up: true}},
		Live:  collect.Live{VIPs: []string{"192.168.1.200"}, Samples: b.samples}}
	read := func(p string) []byte {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	// The config beside the other configs it may include.
	others, _ := filepath.Glob(filepath.Join(filepath.Dir(b.conf), "*.conf"))
	for _, o := range others {
		bd.AddFile(collect.FileName("/etc/keepalived/"+filepath.Base(o)), "/etc/keepalived/"+filepath.Base(o), read(o), nil)
	}
	if b.rules != "" {
		bd.AddFile("iptables.rules", "iptables-save", read(b.rules), nil)
	}
	p := filepath.Join(dir, b.name+".tar.gz")
	if err := bd.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, boxes ...box) []Finding {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, b := range boxes {
		paths = append(paths, b.bundle(t, dir))
	}
	loaded, err := Load(paths, filepath.Join(dir, "unpacked"))
	if err != nil {
		t.Fatal(err)
	}
	return Diagnose(loaded)
}

const (
	mac1, mac2   = "02:00:c0:a8:01:e9", "02:00:c0:a8:01:d5"
	addr1, addr2 = "192.168.1.233", "192.168.1.213"
)

func pair(dir string) (box, box) {
	d := "../../fixtures/" + dir + "/"
	rules := func(n string) string {
		if _, err := os.Stat(d + n + ".rules"); err != nil {
			return ""
		}
		return d + n + ".rules"
	}
	return box{name: "db1", conf: d + "db1.conf", rules: rules("db1"), addr: addr1, mac: mac1},
		box{name: "db2", conf: d + "db2.conf", rules: rules("db2"), addr: addr2, mac: mac2}
}

func find(fs []Finding, sub string) *Finding {
	for i := range fs {
		if strings.Contains(fs[i].What, sub) {
			return &fs[i]
		}
	}
	return nil
}

// TestLoopByConfig: each box sends to the other and takes again what the
// other forwards: by address (the seed's pair), or by a mark its rule sets
// for every sender. The guarded pair has no such finding.
func TestLoopByConfig(t *testing.T) {
	a, b := pair("check/reference")
	fs := run(t, a, b)
	f := find(fs, "the two-box loop, by the configs")
	if f == nil || !f.Loop || !strings.Contains(f.What, "is by address") || !strings.Contains(f.Where, "/etc/keepalived/db1.conf:23") {
		t.Errorf("the seed's pair: %v; want the loop by the configs at keepalived.conf:23", fs)
	}
	a, b = pair("field/fwmark-unguarded")
	fs = run(t, a, b)
	if f := find(fs, "the two-box loop, by the configs"); f == nil || !strings.Contains(f.What, "its rule iptables.rules:3 marks them 1") {
		t.Errorf("unguarded fwmark pair: %v; want the loop through iptables.rules:3", fs)
	}
	if f := find(fs, "the guard does not guard against it"); f == nil || f.Where != "iptables.rules:3" || !strings.Contains(f.What, "no ! --mac-source "+mac2) {
		t.Errorf("unguarded fwmark pair: %v; want iptables.rules:3 naming db2's MAC", fs)
	}
	a, b = pair("check/reference-fixed")
	if fs := run(t, a, b); Loops(fs) {
		t.Errorf("the guarded pair: %v; want no loop", fs)
	}
	a, b = pair("check/reference")
	backupOnly := map[string]string{"net.ipv4.vs.backup_only": "1"}
	a.sysctls, b.sysctls = backupOnly, backupOnly
	if fs := run(t, a, b); Loops(fs) {
		t.Errorf("the seed's pair under backup_only: %v; want no loop by the configs", fs)
	}
}

// TestLoopSeenLive: a box that held no VIP over the window while its
// IPVS counted packets re-balanced what the MASTER forwarded; one that
// held the VIP, or counted nothing, did not.
func TestLoopSeenLive(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	samples := func(held []string, pkts ...uint64) []collect.Sample {
		var out []collect.Sample
		for i, p := range pkts {
			out = append(out, collect.Sample{At: t0.Add(time.Duration(i) * time.Second), Held: held, InPkts: map[string]uint64{"FWM 4": p}})
		}
		return out
	}
	a, b := pair("check/reference-fixed")
	b.samples = samples(nil, 100, 150, 264)
	fs := run(t, a, b)
	f := find(fs, "seen live")
	if f == nil || !f.Loop || f.Box != "db2" || !strings.Contains(f.What, "164 packets") || !strings.Contains(f.What, "over 2.0 s") {
		t.Errorf("a BACKUP counting: %v; want the loop seen live on db2, 164 packets over 2.0 s", fs)
	}
	b.samples = samples([]string{"192.168.1.200"}, 100, 150, 264)
	if fs := run(t, a, b); find(fs, "seen live") != nil {
		t.Errorf("the MASTER counting: %v; want nothing live", fs)
	}
	b.samples = samples(nil, 100, 100, 100)
	if fs := run(t, a, b); Loops(fs) {
		t.Errorf("a quiet BACKUP of a guarded pair: %v; want no loop", fs)
	}
}

// TestStaticFindings: ARP on a box with the VIP on lo, realserver sets
// that differ, a sync daemon without an instance, a mark no service uses.
func TestStaticFindings(t *testing.T) {
	a, b := pair("check/reference-fixed")
	a.vipOnLo = true
	a.sysctls = map[string]string{"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.eth0.arp_announce": "0", "net.ipv4.conf.all.arp_announce": "0"}
	b.vipOnLo = true
	b.sysctls = map[string]string{"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}
	fs := run(t, a, b)
	if f := find(fs, "answers ARP for the VIP"); f == nil || f.Box != "db1" || !strings.Contains(f.What, "arp_ignore 1 and arp_announce 0") {
		t.Errorf("ARP: %v; want db1's eth0 with arp_announce 0, not db2", fs)
	}
	for _, f := range fs {
		if f.Box == "db2" && strings.Contains(f.What, "answers ARP") {
			t.Errorf("db2's ARP is set right (1 and 2): %v", f)
		}
	}
	a, b = pair("field/differing-sets")
	a.conf, b.conf = "../../fixtures/field/differing-sets/node1.conf", "../../fixtures/field/differing-sets/node2.conf"
	if f := find(run(t, a, b), "after a failover the clients reach other servers"); f == nil || f.Where != "/etc/keepalived/node1.conf:21, /etc/keepalived/node2.conf:21" {
		t.Errorf("differing-sets: want the sets that differ, at file:line")
	}
	// A sync daemon without an instance, and the guard's mark 3 beside a
	// config that declares its service by address.
	a, b = pair("check/reference-fixed")
	a.conf = filepath.Join(t.TempDir(), "db1.conf")
	conf, err := os.ReadFile("../../fixtures/check/reference/db1.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf = []byte(strings.Replace(string(conf), "router_id db1", "router_id db1\n   lvs_sync_daemon eth0", 1))
	if err := os.WriteFile(a.conf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	fs = run(t, a, b)
	if f := find(fs, "lvs_sync_daemon names no VRRP instance"); f == nil || f.Box != "db1" {
		t.Errorf("sync daemon without an instance: %v", fs)
	}
	if f := find(fs, "sets mark 3, which no virtual_server"); f == nil || f.Where != "iptables.rules:4" {
		t.Errorf("a mark no service uses: %v; want iptables.rules:4", fs)
	}
}

// collectedRules are a case's BACKUP's rules as collect finds them in
// steady state where its handed-over notify scripts change them: the
// rule notify_backup's bypass_ipvs.sh adds.
var collectedRules = map[string]string{
	"notify-bypass-handed": "*nat\n-A PREROUTING -d 192.168.1.200/32 -p tcp -m tcp --dport 3306 -j REDIRECT\nCOMMIT\n",
}

// TestFieldCorpus: on every pair of the field corpus that runs, the loop
// by the configs is found exactly where the table (written before any
// diagnose existed) expects LOOP of the configs as given.
func TestFieldCorpus(t *testing.T) {
	cases, err := field.Read("../../docs/field.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		configs, rules, _ := c.Files("../../fixtures/field")
		if _, refused := c.Refused(); refused || len(configs) != 2 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			p, err := check.LoadPair(configs, rules)
			if err != nil {
				t.Fatal(err)
			}
			pl, err := check.Derive(p)
			if err != nil {
				t.Fatal(err)
			}
			var boxes []box
			for i, b := range pl.Boxes {
				bx := box{name: b.Node, conf: configs[i], addr: b.Addr.String(), mac: b.MAC}
				if i < len(rules) {
					bx.rules = rules[i]
				}
				if r, ok := collectedRules[c.Name]; ok && b.Node == pl.Backup() {
					bx.rules = filepath.Join(t.TempDir(), "backup.rules")
					if err := os.WriteFile(bx.rules, []byte(r), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				boxes = append(boxes, bx)
			}
			fs := run(t, boxes...)
			if got, want := Loops(fs), c.Yours == "LOOP"; got != want {
				t.Errorf("%s (as given: %s): loop by the configs %v, want %v: %v", c.Name, c.Yours, got, want, fs)
			}
		})
	}
}

// TestBundleChangedByHand: a bundle unpacked, its guard rule and a sysctl
// edited by hand, reads with the change: the guard gone is the loop by
// the configs, backup_only set takes the loop away again.
func TestBundleChangedByHand(t *testing.T) {
	a, b := pair("check/reference-fixed")
	dir := t.TempDir()
	var paths []string
	for _, x := range []box{a, b} {
		unpacked := filepath.Join(dir, x.name)
		bd, err := collect.Read(x.bundle(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bd.Unpack(unpacked); err != nil {
			t.Fatal(err)
		}
		meta, err := json.Marshal(bd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(unpacked, "box.json"), meta, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, unpacked)
	}
	diagnoseDirs := func() []Finding {
		boxes, err := Load(paths, filepath.Join(t.TempDir(), "u"))
		if err != nil {
			t.Fatal(err)
		}
		return Diagnose(boxes)
	}
	if fs := diagnoseDirs(); Loops(fs) {
		t.Fatalf("the guarded pair, unpacked: %v; want no loop", fs)
	}
	// By hand: both guards lose their ! --mac-source.
	for _, p := range paths {
		rules := filepath.Join(p, "iptables.rules")
		text, err := os.ReadFile(rules)
		if err != nil {
			t.Fatal(err)
		}
		edited := regexp.MustCompile(` -m mac ! --mac-source \S+`).ReplaceAll(text, nil)
		if string(edited) == string(text) {
			t.Fatalf("%s: no guard to remove", rules)
		}
		if err := os.WriteFile(rules, edited, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs := diagnoseDirs()
	if f := find(fs, "the two-box loop, by the configs"); f == nil || !strings.Contains(f.What, "its rule iptables.rules:4 marks them") {
		t.Errorf("the guards removed by hand: %v; want the loop through iptables.rules:4", fs)
	}
	// By hand: backup_only on both boxes' sysctls.
	for _, p := range paths {
		meta := filepath.Join(p, "box.json")
		var bd collect.Bundle
		data, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &bd); err != nil {
			t.Fatal(err)
		}
		bd.Sysctls = map[string]string{"net.ipv4.vs.backup_only": "1"}
		if data, err = json.Marshal(bd); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(meta, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if fs := diagnoseDirs(); find(fs, "the two-box loop, by the configs") != nil {
		t.Errorf("backup_only set by hand: %v; want no loop by the configs", fs)
	}
}

// TestCrashHoleFinding: a guard without the REDIRECT beside it is named
// (the crash hole, not a loop); with the REDIRECT of the other box's
// traffic it is not.
func TestCrashHoleFinding(t *testing.T) {
	a, b := pair("check/reference-fixed")
	fs := run(t, a, b)
	if f := find(fs, "does not REDIRECT what it forwards"); f == nil || f.Where != "iptables.rules:4" || f.Loop ||
		!strings.Contains(f.What, "--mac-source "+mac2+" -j REDIRECT") {
		t.Errorf("a guard alone: %v; want the crash hole at iptables.rules:4 with the REDIRECT to add", fs)
	}
	for _, x := range []*box{&a, &b} {
		text, err := os.ReadFile(x.rules)
		if err != nil {
			t.Fatal(err)
		}
		peer := mac2
		if x == &b {
			peer = mac1
		}
		x.rules = filepath.Join(t.TempDir(), x.name+".rules")
		text = append(text, "*nat\n-A PREROUTING -d 192.168.1.200/32 -p tcp -m tcp --dport 3306 -m mac --mac-source "+peer+" -j REDIRECT\nCOMMIT\n"...)
		if err := os.WriteFile(x.rules, text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if fs := run(t, a, b); find(fs, "does not REDIRECT") != nil {
		t.Errorf("guard and REDIRECT: %v; want no crash hole", fs)
	}
}
