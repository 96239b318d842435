package check

import (
	"crypto/md5"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

const fixtures = "../../fixtures/check/"

func load(t *testing.T, dir, a, b, ra, rb string) *Pair {
	t.Helper()
	rules := []string{}
	if ra != "" {
		rules = []string{fixtures + dir + "/" + ra, fixtures + dir + "/" + rb}
	}
	p, err := LoadPair([]string{fixtures + dir + "/" + a, fixtures + dir + "/" + b}, rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// keepalivedAccepts runs keepalived's own config check on a fixed config
// written to dir; it may only complain that the config's interfaces are
// not on this machine, or of what it said of the original too.
func keepalivedAccepts(t *testing.T, files map[string]string, main string) {
	t.Helper()
	if _, err := exec.LookPath("keepalived"); err != nil {
		labtest.Missing(t, "needs keepalived (make deps)")
	}
	dir := t.TempDir()
	base := filepath.Dir(main)
	put := func(rel string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for path, text := range files {
		rel, err := filepath.Rel(base, path)
		if err != nil {
			t.Fatal(err)
		}
		put(rel, []byte(text))
	}
	// includes not edited are copied as they are
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(dir, rel)); os.IsNotExist(err) {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			put(rel, data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// keepalived -t exits non-zero when it only warns: its output is what
	// counts; that it ran at all is checked.
	keepalivedT := func(path string) string {
		t.Helper()
		out, err := exec.Command("keepalived", "-t", "-l", "-f", path).CombinedOutput()
		if _, warned := err.(*exec.ExitError); err != nil && !warned {
			t.Fatalf("keepalived -t: %v", err)
		}
		return string(out)
	}
	out := keepalivedT(filepath.Join(dir, filepath.Base(main)))
	before := keepalivedT(main) // what the user's own config earns
	ignore := regexp.MustCompile(`doesn't exist|Non-existent interface specified in configuration`)
	at := regexp.MustCompile(`^\((\S+: )?Line \d+\) `)
	var rest []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if msg := at.ReplaceAllString(l, ""); l != "" && !ignore.MatchString(l) && !strings.Contains(before, msg) {
			rest = append(rest, l)
		}
	}
	if len(rest) > 0 {
		t.Errorf("keepalived -t on the fixed %s, beyond what it says of the original:\n%s", filepath.Base(main), strings.Join(rest, "\n"))
	}
}

// fieldPair loads fixtures/field/NAME (its configs, and its rules files
// if any, box 1's first) with scripts as --scripts, and plans it.
func fieldPair(t *testing.T, name, scripts string) (*Pair, *Plan, *Prescription) {
	t.Helper()
	confs, _ := filepath.Glob("../../fixtures/field/" + name + "/*.conf")
	rules, _ := filepath.Glob("../../fixtures/field/" + name + "/*.rules")
	r := make([]string, 2)
	copy(r[:], rules)
	return plan(t, []string{confs[0], confs[1]}, r, scripts)
}

// plan loads a pair and plans it: the pair, its lab, its fix.
func plan(t *testing.T, configs, rules []string, scripts string) (*Pair, *Plan, *Prescription) {
	t.Helper()
	p, err := LoadPair(configs, rules)
	if err != nil {
		t.Fatal(err)
	}
	p.Scripts = scripts
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	return p, pl, rx
}

// labCopy is box node's config files as impl runs them, and the main one.
func labCopy(t *testing.T, impl func() scenarios.Implementation, node string) (map[string]string, string) {
	t.Helper()
	files, main, err := impl().(*scenarios.UserKeepalived).Files(node, 0)
	if err != nil {
		t.Fatal(err)
	}
	return files, main
}

// TestReference: the pair the project started from. Neither config says
// which box has which address, so the order of the realservers decides,
// and the plan says it assumed so.
func TestReference(t *testing.T) {
	p := load(t, "reference", "db1.conf", "db2.conf", "", "")
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Boxes[0].Addr.String() != "192.168.1.233" || pl.Boxes[1].Addr.String() != "192.168.1.213" {
		t.Errorf("boxes %+v", pl.Boxes)
	}
	if len(pl.Clients) != 16 || pl.Clients[0].String() != "192.168.1.254" || pl.Clients[15].String() != "192.168.1.239" || len(pl.Services) != 1 || pl.Services[0].Key != "TCP 192.168.1.200:3306" {
		t.Errorf("clients %s, services %+v", pl.Clients, pl.Services)
	}
	var assumed int
	for _, m := range pl.Mappings {
		if strings.HasPrefix(m.Why, "assumed") {
			assumed++
		}
	}
	if assumed != 2 {
		t.Errorf("mappings %+v: want both addresses marked as assumed", pl.Mappings)
	}
	if err := pl.Topology.Validate(); err != nil {
		t.Errorf("derived topology: %v", err)
	}
	if d1 := pl.Topology.Node("d1"); d1 == nil || !d1.HasRole(lab.RoleDirector) || d1.Interfaces[0].MAC != "02:00:c0:a8:01:e9" {
		t.Errorf("d1 %+v", d1)
	}

	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"iptables -t mangle -A PREROUTING -d 192.168.1.200/32 -p tcp --dport 3306 -m mac ! --mac-source 02:00:c0:a8:01:d5 -j MARK --set-xmark 0x3/0xffffffff",
		"iptables -t mangle -A PREROUTING -d 192.168.1.200/32 -p tcp --dport 3306 -m mac ! --mac-source 02:00:c0:a8:01:e9 -j MARK --set-xmark 0x3/0xffffffff",
	}
	for i, b := range rx.Boxes {
		if g := Guards(b.Rules); len(g) != 1 || g[0] != want[i] {
			t.Errorf("box %d guards %q, want %q", i+1, g, want[i])
		}
		if !strings.Contains(b.ReadMACCmd, "ip neigh show "+pl.Boxes[1-i].Addr.String()) {
			t.Errorf("box %d: %q", i+1, b.ReadMACCmd)
		}
		fixed := b.Files[p.Paths[i]]
		// the fix as the hand-written fixture reads, but for its comments
		// and its marks: the seed gave db2 mark 4, the prescription gives
		// both boxes one mark
		hand, _ := os.ReadFile(fixtures + "reference-fixed/" + filepath.Base(p.Paths[i]))
		if stripComments(fixed) != strings.Replace(stripComments(string(hand)), "fwmark 4", "fwmark 3", 1) {
			t.Errorf("box %d: fixed config\n%s\nwant, as reference-fixed has it:\n%s", i+1, fixed, hand)
		}
		keepalivedAccepts(t, b.Files, p.Paths[i])
	}
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "!") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReferenceFixed: the pair as its fix reads (fwmark 3 and 4, with the
// mangle rules) needs nothing more.
func TestReferenceFixed(t *testing.T) {
	p := load(t, "reference-fixed", "db1.conf", "db2.conf", "db1.rules", "db2.rules")
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	s := pl.Services[0]
	if s.Key != "FWM 3" || !slices.Equal(s.Marks, []uint32{3, 4}) || s.VIP.String() != "192.168.1.200" || len(s.Ports) != 1 || s.Ports[0] != 3306 {
		t.Errorf("service %+v", s)
	}
	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	if len(rx.Notes) != 0 || len(rx.Boxes[0].Rules) != 0 || rx.Boxes[0].Diff != "" {
		t.Errorf("prescription for a fixed pair: %+v", rx)
	}
	// The same configs with a rule that forgets the MAC match are not.
	rules, _ := ParseRules("bad.rules", []byte("*mangle\n-A PREROUTING -d 192.168.1.200/32 -p tcp --dport 3306 -j MARK --set-mark 3\nCOMMIT\n"))
	p.Rules[0] = rules
	rx, _ = Prescribe(p, pl)
	if len(rx.Notes) != 1 || !strings.Contains(rx.Notes[0], "bad.rules:2") || !strings.Contains(rx.Notes[0], "! --mac-source 02:00:c0:a8:01:d5") {
		t.Errorf("notes %q: want the unguarded rule named", rx.Notes)
	}
}

// TestHTTP: a pair written differently: unicast VRRP (the addresses come
// from it), the service in an include with a definition, HTTP checks that
// lose the real server's port in a fwmark service, a built-in HTTP backend.
func TestHTTP(t *testing.T) {
	p := load(t, "http", "web1.conf", "web2.conf", "", "")
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Boxes[0].Addr != netip.MustParseAddr("10.20.0.11") || pl.Boxes[1].Addr != netip.MustParseAddr("10.20.0.12") || len(pl.Services) != 1 {
		t.Fatalf("boxes %+v services %+v", pl.Boxes, pl.Services)
	}
	for _, m := range pl.Mappings {
		if strings.HasPrefix(m.Why, "assumed") || strings.HasPrefix(m.From, "interface") {
			t.Errorf("%+v: unicast says the addresses, and the lab names the interface as the config does", m)
		}
	}
	if d2 := pl.Topology.Node("d2"); d2.Interfaces[0].Name != "ens3" {
		t.Errorf("d2's lab interface %q, want the config's ens3", d2.Interfaces[0].Name)
	}
	if err := pl.Topology.Validate(); err != nil {
		t.Error(err)
	}
	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	fixed := rx.Boxes[1].Files[filepath.Join(fixtures, "http/web2.d/services.conf")]
	for _, want := range []string{"virtual_server fwmark 3 {", "real_server 10.20.0.11 {", "connect_port 80"} {
		if !strings.Contains(fixed, want) {
			t.Errorf("web2's fixed services lack %q:\n%s", want, fixed)
		}
	}
	if strings.Contains(fixed, "protocol TCP") {
		t.Errorf("a fwmark service keeps protocol (keepalived warns and drops it):\n%s", fixed)
	}
	for i, b := range rx.Boxes {
		keepalivedAccepts(t, b.Files, p.Paths[i])
	}
	w := pl.Workloads()
	if why := pl.Runnable(); why != "" || len(w) != 1 || w[0].Port != 80 || w[0].Backend != scenarios.BackendHTTP {
		t.Errorf("runnable %q, workloads %+v; want an HTTP backend on port 80", why, w)
	}
}

// TestElectionOrder: the lab lists first the director VRRP makes MASTER,
// whichever config it came from.
func TestElectionOrder(t *testing.T) {
	p := load(t, "reference", "db2.conf", "db1.conf", "", "") // the BACKUP's config first
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	var directors []string
	for _, n := range pl.Topology.Nodes {
		if n.HasRole(lab.RoleDirector) {
			directors = append(directors, n.Name)
		}
	}
	if strings.Join(directors, " ") != "d2 d1" {
		t.Errorf("directors in the lab %v, want d2 (db1.conf, priority 150) first", directors)
	}
}

// TestSeveralServices: two VIPs in a sync group, a MySQL and an HTTP
// service (source hashing) in an include both configs share. Each is its
// own workload on its own VIP; the fix gives both boxes one mark per
// service, so the shared file stays one file.
func TestSeveralServices(t *testing.T) {
	p := load(t, "several", "app1.conf", "app2.conf", "", "")
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if why := pl.Runnable(); why != "" {
		t.Fatalf("not runnable: %s", why)
	}
	want := []scenarios.Service{
		{Name: "TCP 172.16.5.100:3306", VIP: netip.MustParseAddr("172.16.5.100"), Port: 3306, Backend: scenarios.BackendMySQL, Master: "d1"},
		{Name: "TCP 172.16.5.101:80", VIP: netip.MustParseAddr("172.16.5.101"), Port: 80, Backend: scenarios.BackendHTTP, Master: "d1"},
	}
	if w := pl.Workloads(); len(w) != 2 || w[0] != want[0] || w[1] != want[1] {
		t.Errorf("workloads %+v, want %+v", w, want)
	}
	if err := pl.Topology.Validate(); err != nil {
		t.Error(err)
	}
	if got := pl.Topology.VIPAddrs(); len(got) != 2 || got[1] != want[1].VIP {
		t.Errorf("the lab's VIPs %v: every realserver needs both on lo", got)
	}
	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(fixtures, "several/conf.d/services.conf")
	if a, b := rx.Boxes[0].Files[shared], rx.Boxes[1].Files[shared]; a != b || !strings.Contains(a, "virtual_server fwmark 3 {") || !strings.Contains(a, "virtual_server fwmark 4 {") {
		t.Errorf("the shared services file, fixed for d1:\n%s\nfor d2:\n%s\nwant one text, marks 3 and 4", a, b)
	}
	for i, b := range rx.Boxes {
		if g := Guards(b.Rules); len(g) != 2 {
			t.Errorf("d%d: guards %q, want one per service", i+1, g)
		}
		keepalivedAccepts(t, b.Files, p.Paths[i])
	}
}

// withLines copies the pair in fixtures/check/dir to a temporary
// directory, each config with add appended to the lines that match after.
// rewritten copies each of configs, a standalone config, into a
// directory of the test's with r's replacements, which must change it.
func rewritten(t *testing.T, r *strings.Replacer, configs ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, c := range configs {
		text, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		s := r.Replace(string(text))
		if s == string(text) {
			t.Fatalf("%s: nothing to replace", c)
		}
		out = append(out, filepath.Join(dir, filepath.Base(c)))
		if err := os.WriteFile(out[len(out)-1], []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func withLines(t *testing.T, dir string, files []string, after, add string) []string {
	t.Helper()
	out := t.TempDir()
	paths := make([]string, 2)
	for i, f := range files {
		text, err := os.ReadFile(fixtures + dir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(out, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, f), []byte(strings.ReplaceAll(string(text), after, after+add)), 0o644); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			paths[i] = filepath.Join(out, f)
		}
	}
	return paths
}

// TestOtherRealserver: a realserver that is neither box becomes a plain
// realserver node (VIP on lo, ARP quiet, MariaDB), and the scenarios
// count it among the servers.
func TestOtherRealserver(t *testing.T) {
	rs := "    real_server 192.168.1.50 3306 {\n        weight 1\n        TCP_CHECK {\n        }\n    }\n"
	configs := withLines(t, "reference", []string{"db1.conf", "db2.conf"}, "    protocol TCP\n", rs)
	p, err := LoadPair(configs, []string{})
	if err != nil {
		t.Fatal(err)
	}
	// Three realservers and no unicast: which two are the boxes is
	// assumed, the first two box 1 lists, and said so.
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if a := strings.Join(pl.Assumptions(), "; "); pl.Boxes[0].Addr.String() != "192.168.1.50" || pl.Boxes[1].Addr.String() != "192.168.1.233" ||
		!strings.Contains(pl.Mappings[0].Why, "the first 2 of the 3 realservers") || !strings.Contains(a, "d1 address 192.168.1.50") {
		t.Errorf("boxes %v and %v, assumptions %q; want the first two listed, assumed", pl.Boxes[0].Addr, pl.Boxes[1].Addr, a)
	}
	p.Addrs = []netip.Addr{netip.MustParseAddr("192.168.1.233"), netip.MustParseAddr("192.168.1.213")}
	pl, err = Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if why := pl.Runnable(); why != "" || len(pl.Realservers) != 1 || pl.Realservers[0] != netip.MustParseAddr("192.168.1.50") {
		t.Fatalf("runnable %q, realservers %v", why, pl.Realservers)
	}
	n := pl.Topology.Node("rs1")
	if n == nil || n.HasRole(lab.RoleDirector) || n.Sysctls["net.ipv4.conf.all.arp_ignore"] != "1" || len(n.Services) != 1 {
		t.Fatalf("rs1: %+v", n)
	}
	c, err := scenarios.NewCluster(pl.Topology)
	if err != nil || len(c.Others) != 1 || c.Others[0].Node != "rs1" || len(c.Realservers()) != 3 {
		t.Errorf("cluster %+v, %v: want rs1 among the realservers", c, err)
	}
	// A service that balances to other realservers than the first is not
	// run: readiness and the verdict count one set of servers.
	configs = withLines(t, "several", []string{"app1.conf", "app2.conf", "conf.d/services.conf"}, "    lb_algo sh          # a client stays on one box\n    lb_kind DR\n    protocol TCP\n", strings.NewReplacer("3306", "80", "192.168.1.50", "172.16.5.50").Replace(rs))
	if p, err = LoadPair(configs, []string{}); err != nil {
		t.Fatal(err)
	}
	p.Addrs = []netip.Addr{netip.MustParseAddr("172.16.5.11"), netip.MustParseAddr("172.16.5.12")}
	if pl, err = Derive(p); err != nil {
		t.Fatal(err)
	}
	if why := pl.Runnable(); !strings.Contains(why, "TCP 172.16.5.101:80 balances to [172.16.5.11 172.16.5.12 172.16.5.50]") {
		t.Errorf("runnable %q", why)
	}
}

// TestBareVIP: a VIP given without a prefix (the common form, the seed's)
// is a /32; the boxes are found among the realservers of the /24 around
// it, and the plan says both are assumptions.
func TestBareVIP(t *testing.T) {
	paths := rewritten(t, strings.NewReplacer("192.168.1.200/24 dev eth0", "192.168.1.200"), fixtures+"reference/db1.conf", fixtures+"reference/db2.conf")
	p, err := LoadPair(paths, []string{})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Derive(p)
	if err != nil {
		t.Fatalf("derive: %v; want the boxes found in the VIP's /24", err)
	}
	if pl.Boxes[0].Addr.String() != "192.168.1.233" || pl.Boxes[1].Addr.String() != "192.168.1.213" || pl.Subnet.String() != "192.168.1.0/24" {
		t.Errorf("boxes %s, %s in %s; want .233, .213 in 192.168.1.0/24", pl.Boxes[0].Addr, pl.Boxes[1].Addr, pl.Subnet)
	}
	want := []string{"d1 address 192.168.1.233", "d2 address 192.168.1.213", "VIP 192.168.1.200/32 subnet 192.168.1.0/24"}
	if got := pl.Assumptions(); !slices.Equal(got, want) {
		t.Errorf("assumptions %q, want %q", got, want)
	}
}

// TestPublicVIP: a bare public VIP, the boxes (realservers both configs
// list) and VRRP on a private link. The lab's subnet is the boxes', not
// the VIP's, and its client reaches the VIP by a route on that link.
func TestPublicVIP(t *testing.T) {
	const dir = "../../fixtures/field/public-vip/"
	p, err := LoadPair([]string{dir + "web1.conf", dir + "web2.conf"}, []string{})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{pl.Boxes[0].Addr.String(), pl.Boxes[1].Addr.String(), pl.Subnet.String()}; !slices.Equal(got, []string{"172.16.5.11", "172.16.5.12", "172.16.5.0/24"}) {
		t.Errorf("boxes and subnet %v; want .11, .12 in 172.16.5.0/24", got)
	}
	if len(pl.Unreachable) != 0 || len(pl.Realservers) != 0 {
		t.Errorf("unreachable %v, other realservers %v; want none: the boxes are the realservers", pl.Unreachable, pl.Realservers)
	}
	if err := pl.Topology.Validate(); err != nil {
		t.Fatal(err)
	}
	client := pl.Topology.Node("client").Interfaces[0]
	if !slices.Equal(client.Routes, []string{"198.51.100.20/32"}) || !pl.Subnet.Contains(client.Prefixes()[0].Addr()) {
		t.Errorf("client %v routes %v; want an address in %s and a route to the VIP", client.Addresses, client.Routes, pl.Subnet)
	}
	want := []string{"d1 address 172.16.5.11", "d2 address 172.16.5.12", "boxes 172.16.5.11, 172.16.5.12 subnet 172.16.5.0/24"}
	if got := pl.Assumptions(); !slices.Equal(got, want) {
		t.Errorf("assumptions %q, want %q", got, want)
	}
}

// TestThreeBoxes: kubeadm's three control-plane nodes, each a director
// and a realserver. Each box's guard excludes both other boxes' MACs in
// one rule, the rules read back as guarding, and the adversity events
// (which cut the first two apart) are not run.
func TestThreeBoxes(t *testing.T) {
	const dir = "../../fixtures/field/three-masters/"
	p, err := LoadPair([]string{dir + "master1.conf", dir + "master2.conf", dir + "master3.conf"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintln(pl.electionOrder(), pl.Boxes[2].Addr, pl.Backup()); got != "[0 1 2] 10.10.0.13 d2\n" {
		t.Errorf("election order, d3's address, the BACKUP: %s", got)
	}
	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range rx.Boxes {
		g := Guards(b.Rules)
		if len(g) != 1 {
			t.Fatalf("%s: guards %q, want one", b.Node, g)
		}
		rules, err := ParseRules("guard", []byte(g[0]))
		if err != nil {
			t.Fatal(err)
		}
		if r := rules.Marks[0]; !r.guards(pl.peerMACs(i)) || r.guards(append(pl.peerMACs(i), pl.Boxes[i].MAC)) {
			t.Errorf("%s: %q: want it to exclude exactly %v", b.Node, g[0], pl.peerMACs(i))
		}
	}
	evs, why := pl.Events(p, []scenarios.Event{scenarios.Steady, scenarios.FailoverKill, scenarios.SplitBrain})
	if !slices.Equal(evs, []scenarios.Event{scenarios.Steady, scenarios.FailoverKill}) || len(why) != 1 || !strings.Contains(why[0], "split-brain") {
		t.Errorf("events %v, why %q; want split-brain left out, and why", evs, why)
	}
}

// TestNoProtocol: a virtual_server without a protocol line is UDP in
// keepalived's hands, so its TCP clients are not balanced. Where the
// boxes balance to each other the fix declares it by fwmark with a TCP
// guard; where they only direct, the fix adds protocol TCP, and the runs
// as given are UNSERVED, as the plan says.
func TestNoProtocol(t *testing.T) {
	const dir = "../../fixtures/field/no-protocol/"
	_, pl, rx := plan(t, []string{dir + "lb1.conf", dir + "lb2.conf"}, nil, "")
	s := pl.Services[0]
	if s.Key != "UDP 10.44.0.100:80" || s.Protocol != "tcp" || !s.KeepalivedUDP || !slices.ContainsFunc(pl.Assumptions(), func(a string) bool { return strings.Contains(a, "UDP in IPVS") }) {
		t.Errorf("service %+v, assumptions %q; want keepalived's UDP service, TCP clients, assumed", s, pl.Assumptions())
	}
	if g := Guards(rx.Boxes[0].Rules); len(g) != 1 || !strings.Contains(g[0], "-p tcp --dport 80") || len(rx.Notes) != 1 || rx.Unserved != "" {
		t.Errorf("rules %q, notes %q, unserved %q; want a TCP guard and why", rx.Boxes[0].Rules, rx.Notes, rx.Unserved)
	}
	// The same service in front of two other web servers.
	configs := rewritten(t, strings.NewReplacer("real_server 10.44.0.11", "real_server 10.44.0.21", "real_server 10.44.0.12", "real_server 10.44.0.22"),
		dir+"lb1.conf", dir+"lb2.conf")
	_, _, rx = plan(t, configs, nil, "")
	if len(rx.Boxes[0].Rules) != 0 || !strings.Contains(rx.Boxes[0].Diff, "+virtual_server 10.44.0.100 80 {\n+    protocol TCP\n") || !strings.Contains(rx.Unserved, "gives no protocol") {
		t.Errorf("rules %q, diff %q, unserved %q; want protocol TCP added and the runs as given unserved", rx.Boxes[0].Rules, rx.Boxes[0].Diff, rx.Unserved)
	}
}

// TestLBKindCase: keepalived knows DR, NAT and TUN in capitals only:
// "lb_kind dr" is NAT in its hands ("unknown [dr] routing method"), so
// the lab does not run the pair as DR, and says why.
func TestLBKindCase(t *testing.T) {
	const seed = "../../fixtures/field/seed-mysql/"
	configs := rewritten(t, strings.NewReplacer("lb_kind DR", "lb_kind dr"), seed+"mysql1.conf", seed+"mysql2.conf")
	_, pl, _ := plan(t, configs, nil, "")
	if s := pl.Services[0]; s.Kind != "NAT" || !strings.Contains(pl.Runnable(), "lb_kind dr: keepalived knows DR, NAT and TUN, in capitals, and makes this service NAT") {
		t.Errorf("kind %s, runnable %q; want NAT, and why", s.Kind, pl.Runnable())
	}
}

// TestDirectorsOnly: ordinary DR, two directors in front of two web
// servers. The boxes are no realservers in the lab, and no loop can
// start (the MASTER never forwards to the other director): no guard.
func TestDirectorsOnly(t *testing.T) {
	p := load(t, "directors-only", "lb1.conf", "lb2.conf", "", "")
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range pl.Topology.Nodes {
		if n.HasRole(lab.RoleDirector) && n.HasRole(lab.RoleRealserver) {
			t.Errorf("director %s is a realserver in the lab; the configs balance to 10.30.0.21 and .22 only", n.Name)
		}
	}
	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	if len(rx.Boxes[0].Rules)+len(rx.Boxes[1].Rules) != 0 || len(rx.Quiet) != 1 || !strings.Contains(rx.Quiet[0], "no ping-pong loop can start") {
		t.Errorf("rules %v %v, quiet %q; want no guard and why", rx.Boxes[0].Rules, rx.Boxes[1].Rules, rx.Quiet)
	}
}

// TestBoxesListedByBoth: box 2 lists two of box 1's three realservers;
// the boxes are the two both list, the third a plain realserver, and
// each box's table holds its own.
func TestBoxesListedByBoth(t *testing.T) {
	p := load(t, "bare-vip", "db1.conf", "db2.conf", "", "")
	pl, err := Derive(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{pl.Boxes[0].Addr.String(), pl.Boxes[1].Addr.String(), fmt.Sprint(pl.Realservers)}; !slices.Equal(got, []string{"192.168.5.233", "192.168.5.213", "[192.168.5.50]"}) {
		t.Errorf("boxes and realservers %v", got)
	}
	rx, err := Prescribe(p, pl)
	if err != nil {
		t.Fatal(err)
	}
	yours, _, _, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	u := yours().(*scenarios.UserKeepalived)
	// delay_loop 2, connect_timeout 3, keepalived's retry 1 a second
	// apart: out within 2 + 2×3 + 1, back within 2 + 3, each + 10 s.
	want := scenarios.Timers{Advert: 5 * time.Second, CheckDown: 19 * time.Second, CheckUp: 15 * time.Second}
	if u.Tables["d1"] != 3 || u.Tables["d2"] != 2 || u.Timings() != want {
		t.Errorf("tables %v, timers %+v; want d1 3, d2 2, %+v", u.Tables, u.Timings(), want)
	}
}

// TestNotifyScriptNotRun: the lab runs no script a config names (the
// widespread bypass_ipvs.sh): its line is left out of the lab's copy and
// the verdicts say so.
func TestNotifyScriptNotRun(t *testing.T) {
	configs := withLines(t, "reference", []string{"db1.conf", "db2.conf"}, "    advert_int 1\n",
		"    notify_master \"/nonexistent/bypass_ipvs.sh del 192.168.1.200\"\n")
	p, pl, rx := plan(t, configs, []string{}, "")
	yours, _, mappings, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	want := "notify_master /nonexistent/bypass_ipvs.sh del 192.168.1.200 not run"
	if got := pl.Assumptions(mappings...); !slices.Contains(got, "d1 "+want) || !slices.Contains(got, "d2 "+want) {
		t.Errorf("assumptions %q; want %q for both boxes", got, want)
	}
	files, main := labCopy(t, yours, "d1")
	if text := files[main]; !strings.Contains(text, "# ") || regexp.MustCompile(`(?m)^\s*notify_master`).MatchString(text) {
		t.Errorf("the lab's copy still runs notify_master:\n%s", text)
	}
}

// TestGroup: a virtual_server_group of one VIP on two ports is one
// service on both ports, guarded by one mark whose rules cover each port,
// and declared by that mark in place of the group; keepalived makes an
// IPVS service of each port, so each box's table lists its realservers
// twice.
func TestGroup(t *testing.T) {
	p, pl, rx := fieldPair(t, "vs-group", "")
	if len(pl.Services) != 1 || pl.Services[0].VIP != netip.MustParseAddr("10.32.0.100") || !slices.Equal(pl.Services[0].Ports, []uint16{80, 8080}) {
		t.Fatalf("services %+v, want one: 10.32.0.100 ports 80 and 8080", pl.Services)
	}
	if why := pl.Runnable(); why != "" {
		t.Errorf("not runnable: %s", why)
	}
	for i, b := range rx.Boxes {
		g := Guards(b.Rules)
		if len(g) != 2 || !strings.Contains(g[0], "--dport 80 ") || !strings.Contains(g[1], "--dport 8080 ") ||
			!strings.HasSuffix(g[0], "--set-xmark 0x3/0xffffffff") || !strings.HasSuffix(g[1], "--set-xmark 0x3/0xffffffff") {
			t.Errorf("d%d's guards %q, want ports 80 and 8080 both marked 3", i+1, g)
		}
		if !strings.Contains(b.Diff, "+virtual_server fwmark 3 {") || strings.Count(b.Diff, "virtual_server fwmark") != 1 {
			t.Errorf("d%d's diff, want the group's virtual_server declared by mark 3 once:\n%s", i+1, b.Diff)
		}
		keepalivedAccepts(t, b.Files, p.Paths[i])
	}
	yours, prescribed, _, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	if u := yours().(*scenarios.UserKeepalived); u.Tables["d1"] != 4 || u.Serves["d1"][netip.MustParseAddrPort("10.32.0.100:8080")] != 2 {
		t.Errorf("d1's table %d realservers, %d on port 8080; want 4 (2 services × 2), 2", u.Tables["d1"], u.Serves["d1"][netip.MustParseAddrPort("10.32.0.100:8080")])
	}
	// As prescribed, the group is one fwmark service.
	if u := prescribed().(*scenarios.UserKeepalived); u.Tables["d1"] != 2 {
		t.Errorf("d1's table as prescribed: %d realservers; want 2 (one fwmark service)", u.Tables["d1"])
	}
}

// TestUnguardedMarkReplaced: a fwmark service whose rule marks the other
// box's traffic too gets a fix that deletes that rule and adds the
// guard, and the prescribed run applies the guard without it.
func TestUnguardedMarkReplaced(t *testing.T) {
	p, pl, rx := fieldPair(t, "fwmark-unguarded", "")
	const unguarded = "-A PREROUTING -d 192.168.1.200/32 -p tcp -m tcp --dport 3306 -j MARK --set-xmark 0x1/0xffffffff"
	for i, b := range rx.Boxes {
		peer := pl.Boxes[1-i].MAC
		want := []string{"iptables -t mangle -D PREROUTING -d 192.168.1.200/32 -p tcp -m tcp --dport 3306 -j MARK --set-xmark 0x1/0xffffffff",
			"iptables -t mangle -A PREROUTING -d 192.168.1.200/32 -p tcp --dport 3306 -m mac ! --mac-source " + peer + " -j MARK --set-xmark 0x1/0xffffffff"}
		if g := Guards(b.Rules); !slices.Equal(g, want) || len(b.Drop) != 1 || b.Drop[0].Line != 3 {
			t.Errorf("d%d: guards %q, drop %v; want %q, line 3", i+1, g, b.Drop, want)
		}
	}
	yours, prescribed, _, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	if r := yours().(*scenarios.UserKeepalived).Rules["d1"]; !strings.Contains(r, unguarded) {
		t.Errorf("d1's rules as given:\n%s\nwant the user's rule", r)
	}
	if r := prescribed().(*scenarios.UserKeepalived).Rules["d1"]; strings.Contains(r, unguarded) || !strings.Contains(r, "! --mac-source "+pl.Boxes[1].MAC) {
		t.Errorf("d1's rules as prescribed:\n%s\nwant the guard and not the user's rule", r)
	}
}

// TestDigest: an HTTP_GET url's digest is replaced, in the lab's copy,
// by the MD5 of the page the lab's backend on that realserver serves,
// and the mapping says so.
func TestDigest(t *testing.T) {
	p, pl, rx := fieldPair(t, "http-digest", "")
	if why := pl.Runnable(); why != "" {
		t.Fatalf("not runnable: %s", why)
	}
	yours, _, mappings, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	files, main := labCopy(t, yours, "d1")
	for _, a := range []string{"10.31.0.11", "10.31.0.12"} {
		id := pl.serverID(netip.MustParseAddr(a))
		sum := fmt.Sprintf("%x", md5.Sum([]byte(scenarios.BackendAnswer(id))))
		if id == 0 || !strings.Contains(files[main], "digest "+sum) {
			t.Errorf("%s (server_id %d): the lab's www1.conf has no digest %s:\n%s", a, id, sum, files[main])
		}
		if !slices.ContainsFunc(mappings, func(m Mapping) bool { return m.To == sum && strings.Contains(m.Why, a) }) {
			t.Errorf("%s: no mapping for its digest", a)
		}
	}
	if strings.Contains(files[main], "9b3a0c85a887a256d6939da88aabd8cd") {
		t.Errorf("the user's digest is still in the lab's copy")
	}
}

// TestActiveActive: each box MASTER of one VIP; each service runs with
// its VIP's MASTER first, and a switchover's priority beats both boxes'.
func TestActiveActive(t *testing.T) {
	p, pl, _ := fieldPair(t, "active-active", "")
	if why := pl.Runnable(); why != "" {
		t.Fatalf("not runnable: %s", why)
	}
	var got []string
	for _, w := range pl.Workloads() {
		got = append(got, w.VIP.String()+" "+w.Master)
	}
	if want := []string{"192.168.1.200 d1", "192.168.1.201 d2"}; !slices.Equal(got, want) {
		t.Errorf("services and their MASTERs %q, want %q", got, want)
	}
	if sp := pl.SwitchoverPriority(p); sp != 151 {
		t.Errorf("switchover priority %d, want 151: above both boxes' 150", sp)
	}
}

// TestStrict: vrrp_strict with no accept makes keepalived drop the VIP's
// traffic; the plan says so (the cause of the configs' UNSERVED runs),
// and the fix removes vrrp_strict.
func TestStrict(t *testing.T) {
	p, _, rx := fieldPair(t, "vrrp-strict", "")
	if !strings.Contains(rx.Unserved, "lvs1.conf:11: vrrp_strict") || len(rx.Notes) != 2 {
		t.Errorf("unserved %q, notes %q; want vrrp_strict at lvs1.conf:11, a note per box", rx.Unserved, rx.Notes)
	}
	for i, b := range rx.Boxes {
		if !strings.Contains(b.Diff, "+# ") || !strings.Contains(b.Diff, "vrrp_strict") {
			t.Errorf("d%d's diff does not comment vrrp_strict out:\n%s", i+1, b.Diff)
		}
		keepalivedAccepts(t, b.Files, p.Paths[i])
	}
}

// TestInterfacesRenamed: every line that names an interface the lab's box
// lacks (track_interface, a VIP's dev) names the box's one in the lab's
// copy, as the mapping says.
func TestInterfacesRenamed(t *testing.T) {
	add := "    track_interface {\n        eth0\n        eth1 weight 10\n    }\n"
	configs := withLines(t, "reference", []string{"db1.conf", "db2.conf"}, "    advert_int 1\n", add)
	p, pl, rx := plan(t, configs, []string{}, "")
	if !slices.ContainsFunc(pl.Mappings, func(m Mapping) bool { return m.Box == "d1" && m.From == "interface eth1" && m.To == "eth0" }) {
		t.Errorf("no mapping of eth1 to eth0: %+v", pl.Mappings)
	}
	yours, _, _, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	files, main := labCopy(t, yours, "d1")
	if text := files[main]; strings.Contains(text, "eth1") || !strings.Contains(text, "        eth0 weight 10\n") {
		t.Errorf("the lab's db1.conf still names eth1, or lost the weight:\n%s", text)
	}
}

// TestNoScriptRuns: no keyword that makes keepalived run a command stays
// in the lab's copy: a real server's notify_down, a virtual server's
// quorum_up, a sync group's notify_master, a global notify FIFO script.
func TestNoScriptRuns(t *testing.T) {
	configs := withLines(t, "reference", []string{"db1.conf", "db2.conf"}, "    protocol TCP\n",
		"    quorum_up \"/etc/keepalived/q.sh up\"\n    real_server 192.168.1.233 3307 {\n        notify_down /etc/keepalived/rs_down.sh\n        notify_up /etc/keepalived/rs_up.sh\n    }\n")
	for _, c := range configs {
		text, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, "vrrp_sync_group G {\n    group {\n        VI_1\n    }\n    notify_master /etc/keepalived/g.sh\n}\n"...)
		if err := os.WriteFile(c, text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, pl, rx := plan(t, configs, []string{}, "")
	yours, _, mappings, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	files, main := labCopy(t, yours, "d1")
	for _, l := range strings.Split(files[main], "\n") {
		if strings.Contains(l, "/etc/keepalived/") && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			t.Errorf("the lab's copy still runs: %s", l)
		}
	}
	if n := len(slices.DeleteFunc(slices.Clone(mappings), func(m Mapping) bool { return m.Box != "d1" || m.To != "not run" })); n != 4 {
		t.Errorf("%d not-run mappings on d1, want 4: %+v", n, mappings)
	}
}

// TestScriptsHandedOver: with --scripts, a notify script found there runs
// in the lab from the box's run directory with keepalived's arguments;
// one that makes its own REDIRECT fix is left out of the prescription,
// which says so; without --scripts, or where DIR lacks it, nothing runs
// and the mapping says how to hand it over.
func TestScriptsHandedOver(t *testing.T) {
	load := func(scripts string) (*Prescription, func() scenarios.Implementation, func() scenarios.Implementation, []Mapping) {
		t.Helper()
		p, pl, rx := fieldPair(t, "notify-bypass", scripts)
		yours, prescribed, mappings, err := Runs(p, pl, rx, "lvslab")
		if err != nil {
			t.Fatal(err)
		}
		return rx, yours, prescribed, mappings
	}
	rx, yours, prescribed, mappings := load("../../fixtures/field/notify-bypass-handed/scripts")
	files, main := labCopy(t, yours, "d2")
	want := `notify_backup "` + scenarios.LabDir + `/scripts/bypass_ipvs.sh add 192.168.1.200"`
	if !strings.Contains(files[main], want) || !strings.Contains(files["scripts/bypass_ipvs.sh"], "REDIRECT") {
		t.Errorf("the lab's db2.conf, want %s and the script beside it:\n%s", want, files[main])
	}
	if !slices.ContainsFunc(mappings, func(m Mapping) bool { return m.Box == "d2" && strings.HasPrefix(m.To, "runs ") }) {
		t.Errorf("no mapping says the script runs: %+v", mappings)
	}
	if len(rx.Notes) != 6 || !strings.Contains(rx.Notes[0], "makes a fix of its own (-j REDIRECT)") {
		t.Errorf("notes %q, want the three notify lines of each box removed by the fix", rx.Notes)
	}
	files, main = labCopy(t, prescribed, "d2")
	if _, ok := files["scripts/bypass_ipvs.sh"]; ok || strings.Contains(files[main], "\n    notify_backup") {
		t.Errorf("the prescribed db2.conf still runs the script:\n%s", files[main])
	}
	for scripts, why := range map[string]string{"": "(--scripts DIR hands yours over)", t.TempDir(): "(no bypass_ipvs.sh in "} {
		rx, _, _, mappings := load(scripts)
		if len(rx.Notes) != 0 || !slices.ContainsFunc(mappings, func(m Mapping) bool { return m.To == "not run" && strings.Contains(m.Why, why) }) {
			t.Errorf("--scripts %q: notes %q, mappings %+v; want the scripts not run, and %q", scripts, rx.Notes, mappings, why)
		}
	}
}

// TestIncludeFromConfigDir: a pair copied from its boxes with includes
// by /etc/keepalived/... reads the copies beside the configs, and the
// lab's copy includes them from its own directory.
func TestIncludeFromConfigDir(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"app1.conf", "app2.conf", "conf.d/services.conf"} {
		text, err := os.ReadFile(fixtures + "several/" + f)
		if err != nil {
			t.Fatal(err)
		}
		text = []byte(strings.Replace(string(text), "include conf.d/*.conf", "include "+keepalivedconf.ConfigDir+"conf.d/*.conf", 1))
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, pl, rx := plan(t, []string{dir + "/app1.conf", dir + "/app2.conf"}, []string{}, "")
	if len(pl.Services) != 2 {
		t.Fatalf("%d services, want the included file's 2", len(pl.Services))
	}
	yours, _, mappings, err := Runs(p, pl, rx, "lvslab")
	if err != nil {
		t.Fatal(err)
	}
	files, main := labCopy(t, yours, "d1")
	if !strings.Contains(files[main], "include conf.d/*.conf") || files["conf.d/services.conf"] == "" {
		t.Errorf("the lab's app1.conf does not include its conf.d:\n%s\nfiles %v", files[main], slices.Collect(maps.Keys(files)))
	}
	if !slices.ContainsFunc(mappings, func(m Mapping) bool { return m.To == "include conf.d/*.conf" }) {
		t.Errorf("no mapping of the include: %+v", mappings)
	}
}

// A bare VIP's subnet is the /24 around it, or the longest prefix that
// also holds the realservers near it; those further away stay outside.
func TestLabNet(t *testing.T) {
	vip := netip.MustParsePrefix("10.0.0.100/32")
	for _, c := range []struct {
		rs   []string
		want string
	}{
		{nil, "10.0.0.0/24"},
		{[]string{"10.0.0.11", "10.0.0.12"}, "10.0.0.0/24"},
		{[]string{"10.0.1.11", "10.0.1.12"}, "10.0.0.0/23"},
		{[]string{"10.0.0.11", "10.0.3.12", "192.168.1.5"}, "10.0.0.0/22"},
		{[]string{"10.1.0.11"}, "10.0.0.0/24"},
	} {
		var rs []netip.Addr
		for _, a := range c.rs {
			rs = append(rs, netip.MustParseAddr(a))
		}
		if got := labNet(vip, rs); got.String() != c.want {
			t.Errorf("realservers %v: %s, want %s", c.rs, got, c.want)
		}
	}
	if got := labNet(netip.MustParsePrefix("10.0.0.100/22"), nil); got.String() != "10.0.0.0/22" {
		t.Errorf("a VIP with its prefix: %s, want it", got)
	}
}

// TestStrictAccept: accept keeps strict mode from dropping the VIP's
// traffic only under VRRP version 3; under 2, keepalived resets it.
func TestStrictAccept(t *testing.T) {
	for _, c := range []struct {
		global string
		fixed  bool
	}{{"", false}, {"    vrrp_version 3\n", true}} {
		dir := t.TempDir()
		paths := make([]string, 2)
		for i, f := range []string{"lvs1.conf", "lvs2.conf"} {
			text, err := os.ReadFile("../../fixtures/field/vrrp-strict/" + f)
			if err != nil {
				t.Fatal(err)
			}
			s := strings.Replace(string(text), "    advert_int 1\n", "    advert_int 1\n    accept\n", 1)
			s = strings.Replace(s, "    vrrp_strict\n", "    vrrp_strict\n"+c.global, 1)
			paths[i] = filepath.Join(dir, f)
			if err := os.WriteFile(paths[i], []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, _, rx := plan(t, paths, []string{}, "")
		if (rx.Unserved == "") != c.fixed {
			t.Errorf("accept, global %q: unserved %q; want it said only under VRRP version 2", c.global, rx.Unserved)
		}
	}
}

// TestDifferences: realserver sets that differ per box are a finding of
// the plan, not an error: what each box sends to once MASTER.
func TestDifferences(t *testing.T) {
	_, pl, _ := fieldPair(t, "differing-sets", "")
	if len(pl.Differences) != 1 || !strings.HasSuffix(pl.Differences[0], "as MASTER, d2 sends nothing to 10.4.0.23") {
		t.Errorf("differences %q, want d2 without 10.4.0.23", pl.Differences)
	}
	if _, pl, _ := fieldPair(t, "seed-mysql", ""); len(pl.Differences) != 0 {
		t.Errorf("the same sets: differences %q", pl.Differences)
	}
}

// TestCrashHoleRedirect: beside each guard, one nat REDIRECT per other
// box of the VIP traffic it forwards (its MAC), in the restore input's
// nat section; none where no guard is written.
func TestCrashHoleRedirect(t *testing.T) {
	three := "../../fixtures/field/three-masters/"
	_, pl, rx := plan(t, []string{three + "master1.conf", three + "master2.conf", three + "master3.conf"}, nil, "")
	for i, b := range rx.Boxes {
		var redirects []string
		for _, r := range b.Rules {
			if strings.HasPrefix(r, natRule) {
				redirects = append(redirects, r)
			}
		}
		if len(redirects) != len(pl.peerMACs(i)) {
			t.Errorf("%s: REDIRECTs %q; want one per other box %v", b.Node, redirects, pl.peerMACs(i))
		}
		for _, m := range pl.peerMACs(i) {
			want := natRule + "-d 10.10.0.10/32 -p tcp --dport 6443 -m mac --mac-source " + m + " -j REDIRECT"
			_, nat, _ := strings.Cut(b.Restore, "*nat\n:PREROUTING ACCEPT [0:0]\n")
			if !slices.Contains(redirects, want) || !strings.Contains(nat, strings.TrimPrefix(want, "iptables -t nat ")+"\n") {
				t.Errorf("%s: want %q in the rules and the restore's nat section:\n%s", b.Node, want, b.Restore)
			}
		}
	}
	_, _, rx = plan(t, []string{"../../fixtures/field/two-subnets/lb1.conf", "../../fixtures/field/two-subnets/lb2.conf"}, nil, "")
	for _, b := range rx.Boxes {
		if strings.Contains(b.Restore, "*nat") {
			t.Errorf("%s: no guard, yet a nat section:\n%s", b.Node, b.Restore)
		}
	}
}
