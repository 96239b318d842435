package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestParseDefaultTopology(t *testing.T) {
	topo, err := ParseTopologyFile("../fixtures/topologies/two-director.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(topo.Nodes), 3; got != want {
		t.Fatalf("nodes: got %d, want %d", got, want)
	}
	d1 := topo.Node("d1")
	if d1 == nil || !d1.HasRole(RoleRealserver) || !d1.HasService(ServiceMySQL) {
		t.Fatalf("d1: got %+v, want a realserver running mysql", d1)
	}
	if got, want := d1.Interfaces[0].HardwareAddr().String(), "02:00:c0:a8:01:e9"; got != want {
		t.Errorf("d1 MAC: got %s, want %s", got, want)
	}
	if got, want := d1.Sysctls["net.ipv4.conf.all.arp_ignore"], "1"; got != want {
		t.Errorf("d1 arp_ignore (YAML anchor): got %q, want %q", got, want)
	}
	if got, want := topo.VIPAddr().String(), "192.168.1.200"; got != want {
		t.Errorf("VIP: got %s, want %s", got, want)
	}
}

// base is a valid topology; each bad case replaces one line of it.
const base = `name: t
vip: 10.0.0.200
bridges:
  - name: lan
nodes:
  - name: a
    roles: [director, realserver]
    services: [mysql]
    interfaces:
      - name: eth0
        bridge: lan
        mac: "02:00:00:00:00:01"
        addresses: [10.0.0.1/24]
  - name: b
    roles: [client]
    interfaces:
      - name: eth0
        bridge: lan
        mac: "02:00:00:00:00:02"
        addresses: [10.0.0.2/24]
`

func TestParseTopologyErrors(t *testing.T) {
	if _, err := ParseTopology("t.yaml", []byte(base)); err != nil {
		t.Fatalf("base topology: %v", err)
	}
	for _, tc := range []struct {
		name     string
		old, new string
		want     string // substring of the error, with file:line
	}{
		{"unknown field", `    roles: [client]`, `    colour: red`, "t.yaml:15: unknown field \"colour\""},
		{"duplicate node", `  - name: b`, `  - name: a`, `t.yaml:14: nodes[1].name: duplicate name "a"`},
		{"node named like a bridge", `  - name: b`, `  - name: lan`, `t.yaml:14: nodes[1].name: duplicate name "lan"`},
		{"duplicate interface", `        bridge: lan
        mac: "02:00:00:00:00:02"`, `        bridge: lan
      - name: eth0
        bridge: lan
        mac: "02:00:00:00:00:02"`, `nodes[1].interfaces[1].name: duplicate interface "eth0"`},
		{"duplicate address", `[10.0.0.2/24]`, `[10.0.0.1/24]`, `t.yaml:20: nodes[1].interfaces[0].addresses[0]: duplicate address 10.0.0.1 (also a.eth0)`},
		{"duplicate MAC", `"02:00:00:00:00:02"`, `"02:00:00:00:00:01"`, `t.yaml:19: nodes[1].interfaces[0].mac: duplicate MAC`},
		{"bad MAC", `"02:00:00:00:00:02"`, `"02:zz"`, `t.yaml:19: nodes[1].interfaces[0].mac: bad MAC "02:zz"`},
		{"multicast MAC", `"02:00:00:00:00:02"`, `"01:00:5e:00:00:12"`, `is multicast`},
		{"long interface name", `      - name: eth0
        bridge: lan
        mac: "02:00:00:00:00:02"`, `      - name: averyverylongname
        bridge: lan
        mac: "02:00:00:00:00:02"`, `t.yaml:17: nodes[1].interfaces[0].name: interface name "averyverylongname" is 17 characters, the kernel allows 15`},
		{"bad CIDR", `[10.0.0.2/24]`, `[10.0.0.2/33]`, `t.yaml:20: nodes[1].interfaces[0].addresses[0]: bad address "10.0.0.2/33"`},
		{"IPv6 address", `[10.0.0.2/24]`, `[fd00::2/64]`, `want an IPv4 CIDR`},
		{"link to missing bridge", `        bridge: lan
        mac: "02:00:00:00:00:02"`, `        bridge: wan
        mac: "02:00:00:00:00:02"`, `t.yaml:18: nodes[1].interfaces[0].bridge: link to missing bridge "wan"`},
		{"link to missing node", `        bridge: lan
        mac: "02:00:00:00:00:02"`, `        peer: c.eth0
        mac: "02:00:00:00:00:02"`, `t.yaml:18: nodes[1].interfaces[0].peer: link to missing node "c"`},
		{"no link", `        bridge: lan
        mac: "02:00:00:00:00:02"`, `        mac: "02:00:00:00:00:02"`, `needs a link`},
		{"VIP outside every subnet", `vip: 10.0.0.200`, `vip: 10.9.0.200`, `t.yaml:2: vip: VIP 10.9.0.200 is outside every subnet`},
		{"bad route", `[10.0.0.2/24]`, "[10.0.0.2/24]\n        routes: [203.0.113.10]", `t.yaml:21: nodes[1].interfaces[0].routes[0]: bad route "203.0.113.10": want an IPv4 prefix`},
		{"VIP is a node address", `vip: 10.0.0.200`, `vip: 10.0.0.2`, `VIP 10.0.0.2 is also an interface address`},
		{"realserver without VIP", "vip: 10.0.0.200\n", "", `vip: realservers need a vip`},
		{"second VIP outside every subnet", `vip: 10.0.0.200`, "vip: 10.0.0.200\nvips: [10.0.0.201, 10.9.0.7]", `t.yaml:3: vips[1]: VIP 10.9.0.7 is outside every subnet`},
		{"second VIP repeats the first", `vip: 10.0.0.200`, "vip: 10.0.0.200\nvips: [10.0.0.200]", `vips[0]: VIP 10.0.0.200 is also vip`},
		{"netem jitter past the delay", `        addresses: [10.0.0.2/24]`, "        addresses: [10.0.0.2/24]\n        netem: {delay: 10ms, jitter: 20ms}", `t.yaml:21: nodes[1].interfaces[0].netem.jitter: 20ms is more than the delay "10ms"`},
		{"netem loss past 100", `        addresses: [10.0.0.2/24]`, "        addresses: [10.0.0.2/24]\n        netem: {loss: 120}", `nodes[1].interfaces[0].netem.loss: 120: want a percentage`},
		{"netem rate unreadable", `        addresses: [10.0.0.2/24]`, "        addresses: [10.0.0.2/24]\n        netem: {rate: fast}", `netem.rate: "fast": want a rate such as 10mbit`},
		{"unknown role", `[client]`, `[router]`, `t.yaml:15: nodes[1].roles[0]: unknown role "router"`},
		{"unknown service", `[mysql]`, `[postgres]`, `t.yaml:8: nodes[0].services[0]: unknown service "postgres"`},
		{"bad node name", `  - name: b`, `  - name: B_1`, `nodes[1].name: node name "B_1"`},
		{"non-net sysctl", `    roles: [client]`, "    roles: [client]\n    sysctls: {kernel.panic: \"1\"}", `sysctl "kernel.panic": only net.* keys`},
		{"host-wide sysctl", `    roles: [client]`, "    roles: [client]\n    sysctls:\n      net.core.rmem_max: \"1\"", `t.yaml:17: nodes[1].sysctls.'net.core.rmem_max': sysctl "net.core.rmem_max": net.core keys but net.core.somaxconn are the host's`},
		{"sysctl key with a newline", `    roles: [client]`, "    roles: [client]\n    sysctls: {\"net.ipv4.ip_forward\\n\": \"1\"}", `t.yaml:16: nodes[1].sysctls: sysctl "net.ipv4.ip_forward\n": only net.* keys`},
		{"server_id past 32 bits", `    roles: [client]`, "    roles: [client]\n    server_id: 4294967296", `t.yaml:16: nodes[1].server_id: server_id 4294967296: want 0 to 4294967295`},
		{"syntax error", `  - name: b`, `  - name: [b`, `t.yaml:15: ',' or ']' must be specified`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, tc.old, tc.new, 1)
			if src == base {
				t.Fatalf("case does not change the base topology")
			}
			_, err := ParseTopology("t.yaml", []byte(src))
			if err == nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines, want one line", err)
			}
		})
	}
}

// A VIP outside every subnet is valid when a client reaches it by a
// route on its link.
func TestParseTopologyVIPByRoute(t *testing.T) {
	routed := strings.Replace(strings.Replace(base, "vip: 10.0.0.200", "vip: 203.0.113.10", 1),
		"[10.0.0.2/24]", "[10.0.0.2/24]\n        routes: [203.0.113.10/32]", 1)
	if _, err := ParseTopology("t.yaml", []byte(routed)); err != nil {
		t.Errorf("VIP reached by a route: %v", err)
	}
	if _, err := ParseTopology("t.yaml", []byte(strings.Replace(routed, "routes: [203.0.113.10/32]", "routes: [203.0.113.11/32]", 1))); err == nil || !strings.Contains(err.Error(), "outside every subnet and route") {
		t.Errorf("VIP beside the route: got %v, want it outside every subnet and route", err)
	}
}

func TestPortName(t *testing.T) {
	for _, tc := range []struct {
		node, ifc string
		want      string
	}{
		{"d1", "eth0", "d1-eth0"},
		{"client", "eth0", "client-eth0"},
		{"clientbox", "eth12345", "p4"},
	} {
		if got := portName(tc.node, tc.ifc, 4); got != tc.want {
			t.Errorf("PortName(%q, %q): got %q, want %q", tc.node, tc.ifc, got, tc.want)
		}
	}
}

func TestFixtureTopologiesParse(t *testing.T) {
	files, _ := os.ReadDir("../fixtures/topologies")
	for _, f := range files {
		if _, err := ParseTopologyFile("../fixtures/topologies/" + f.Name()); err != nil {
			t.Errorf("%s: %v", f.Name(), err)
		}
	}
}

// FuzzParseTopology: the parser never panics; what it accepts names only
// plain nodes (their names become paths) within the limits, and each
// error is one line.
func FuzzParseTopology(f *testing.F) {
	def, err := os.ReadFile("../fixtures/topologies/two-director.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(def)
	f.Add([]byte("name: x\nnodes: [{name: a, interfaces: [{name: eth0, peer: b.eth0}]}, {name: b, interfaces: [{name: eth0, peer: a.eth0}]}]\n"))
	f.Add([]byte("a: &a [x, x]\nb: &b [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		slow := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("ParseTopology takes over 5 s on %q", data)) })
		defer slow.Stop()
		topo, err := ParseTopology("fuzz.yaml", data)
		if err != nil {
			if strings.Contains(strings.TrimSpace(err.Error()), "\n") && !errors.As(err, new(ValidationError)) {
				t.Errorf("error spans lines: %q", err)
			}
			return
		}
		if len(topo.Nodes) > MaxNodes {
			t.Errorf("accepted %d nodes, over MaxNodes", len(topo.Nodes))
		}
		for _, n := range topo.Nodes {
			if err := CheckNodeName(n.Name); err != nil {
				t.Errorf("accepted node name %q: %v", n.Name, err)
			}
		}
	})
}

// TestNetemAttrs: what a topology's netem becomes in netlink's terms.
func TestNetemAttrs(t *testing.T) {
	a, field, err := Netem{Delay: "100ms", Jitter: "50ms", Loss: 30, Reorder: 5, Rate: "10mbit"}.attrs()
	if err != nil || field != "" {
		t.Fatal(field, err)
	}
	if a.Latency != 100000 || a.Jitter != 50000 || a.Loss != 30 || a.ReorderProb != 5 || a.Rate64 != 1250000 {
		t.Errorf("%+v", a)
	}
	if _, field, err := (Netem{Reorder: 5}).attrs(); field != "reorder" || err == nil {
		t.Errorf("reorder without delay: %s %v", field, err)
	}
	keys := Match{Protocol: 112, SrcMAC: net.HardwareAddr{0x02, 0, 0xc0, 0xa8, 1, 0xe9}}.keys()
	want := []netlink.TcU32Key{{Off: 8, Mask: 0x00ff0000, Val: 0x00700000}, {Off: -8, Mask: 0xffffffff, Val: 0x0200c0a8}, {Off: -4, Mask: 0xffff0000, Val: 0x01e90000}}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %+v, want %+v", keys, want)
	}
}
