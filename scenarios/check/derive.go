// Package check is `lvslab check`: a user's own pair of keepalived
// configs, the lab derived from them, and the fix written for them.
//
// Derive reads the boxes' addresses, the VIPs and the virtual
// services out of the configs and builds a lab topology around them;
// every name it maps onto the lab (interfaces, paths) and every guess it
// makes is listed in Plan.Mappings. Prescribe writes the fwmark guard for
// that pair: the iptables rules with its VIPs, ports, marks and MACs, and
// the configs with each address service declared by its mark. Runs gives
// the two ways the scenarios run the pair: as given, and as prescribed.
package check

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// Pair is what the user gives: two configs (or three or four: a box
// each), optionally their iptables rules, the boxes' MACs and addresses
// where they want them fixed. Every slice has one entry per box.
type Pair struct {
	Paths   []string
	Configs []*keepalivedconf.Config
	Rules   []*Rules            // nil: none given
	MACs    []net.HardwareAddr  // nil: generated
	Addrs   []netip.Addr        // zero: derived
	Ports   map[uint32][]uint16 // fwmark -> ports, from --port
	// Scripts is the directory of the scripts the configs name, as on
	// the boxes (--scripts): "" for none handed over.
	Scripts string
}

// Box is one of the directors as the lab builds it.
type Box struct {
	Node      string     `json:"node"` // d1, d2
	Config    string     `json:"config"`
	Addr      netip.Addr `json:"addr"`
	MAC       string     `json:"mac"`
	Interface string     `json:"interface"` // as the config names it
	// LabInterface is the lab's interface: the config's name where it can.
	LabInterface string `json:"lab_interface"`
	State        string `json:"state"`
	Priority     int    `json:"priority"`
}

// Service is one virtual service of the pair, as each box declares it.
type Service struct {
	Key      string     `json:"key"` // as box 1 declares it: "TCP 192.168.1.200:3306", "FWM 3"
	VIP      netip.Addr `json:"vip"`
	Ports    []uint16   `json:"ports"`
	Protocol string     `json:"protocol"` // tcp or udp
	// Marks are each box's fwmark when the service is declared by mark.
	Marks []uint32 `json:"marks"`
	Kind  string   `json:"lb_kind"`
	// Master is the box VRRP makes MASTER of the VIP: in an
	// active-active pair, not the same for every service.
	Master string `json:"master"`
	// KeepalivedUDP: the configs give no protocol, so keepalived makes
	// the IPVS service UDP while the lab's clients speak TCP (Protocol).
	KeepalivedUDP bool `json:"keepalived_udp,omitempty"`
	// Servers are each box's declaration of it, in its config.
	Servers []*keepalivedconf.VirtualServer `json:"-"`
}

// Mapping is one thing lvslab changed or assumed to run the pair in a lab.
type Mapping struct {
	Box  string `json:"box,omitempty"`
	From string `json:"from"`
	To   string `json:"to"`
	Why  string `json:"why"`
	// Assumed: the configs do not say so; the verdicts hold if it is so.
	Assumed bool `json:"assumed,omitempty"`
}

// Assumptions are what the verdicts rest on that the configs do not say,
// of the plan's mappings and more (the lab's), one line each.
func (pl *Plan) Assumptions(more ...Mapping) []string {
	var out []string
	for _, m := range append(slices.Clone(pl.Mappings), more...) {
		if m.Assumed {
			out = append(out, strings.TrimSpace(m.Box+" "+m.From+" "+m.To))
		}
	}
	return out
}

// Plan is the lab derived from a pair.
type Plan struct {
	Boxes       []Box          `json:"boxes"`
	Subnet      netip.Prefix   `json:"subnet"`
	VIPs        []netip.Prefix `json:"vips"`
	Services    []*Service     `json:"services"`
	Clients     []netip.Addr   `json:"clients"`
	Realservers []netip.Addr   `json:"realservers,omitempty"` // neither box
	// Unreachable are realservers outside the directors' link: the lab
	// runs them unreachable (no node).
	Unreachable []netip.Addr `json:"unreachable,omitempty"`
	// Differences say where the boxes' realserver sets for a service
	// differ: what each serves once it is MASTER.
	Differences []string      `json:"differences,omitempty"`
	Mappings    []Mapping     `json:"mappings"`
	Topology    *lab.Topology `json:"-"`
	// unrunnable says why the VRRP instances do not fit the lab, or "".
	unrunnable string
	// masters are the box VRRP makes MASTER of each VIP.
	masters map[netip.Addr]int
}

// MaxBoxes bounds the boxes check runs: a pair, a triple, four.
const MaxBoxes = 4

// labIface is the interface a lab node has on the bridge, unless its
// config names one.
const labIface = "eth0"

// ifaceName is an interface name the lab can give a box (15 bytes at most,
// and no bridge-port clash: letters, digits, dot, dash).
var ifaceName = regexp.MustCompile(`^[a-z][a-z0-9.-]{0,10}$`)

// Derive builds the lab for a pair.
func Derive(p *Pair) (*Plan, error) {
	if err := validate(p); err != nil {
		return nil, err
	}
	pl := &Plan{Boxes: make([]Box, len(p.Configs))}
	for i, c := range p.Configs {
		if len(c.Instances) == 0 {
			return nil, fmt.Errorf("%s: no vrrp_instance: nothing decides which box directs", p.Paths[i])
		}
		in := c.Instances[0]
		pl.Boxes[i] = Box{Node: fmt.Sprintf("d%d", i+1), Config: p.Paths[i], Interface: in.Interface, State: in.State, Priority: in.Priority}
		for _, in := range c.Instances {
			for _, v := range in.VIPs {
				if !slices.ContainsFunc(pl.VIPs, func(p netip.Prefix) bool { return p.Addr() == v.Prefix.Addr() }) {
					pl.VIPs = append(pl.VIPs, v.Prefix)
				}
			}
		}
	}
	pl.masters, pl.unrunnable = instancesAgree(p)
	if len(pl.VIPs) == 0 {
		return nil, fmt.Errorf("%s: no virtual_ipaddress", p.Paths[0])
	}
	if err := pl.addresses(p); err != nil {
		return nil, err
	}
	if err := pl.services(p); err != nil {
		return nil, err
	}
	if err := pl.subnetAndClient(p); err != nil {
		return nil, err
	}
	pl.unreachable()
	pl.differences()
	for _, s := range pl.Services {
		m, ok := pl.masters[s.VIP]
		if !ok {
			m = pl.electionOrder()[0]
		}
		s.Master = pl.Boxes[m].Node
	}
	for i := range pl.Boxes {
		b := &pl.Boxes[i]
		mac, why := p.MACs[i], "given by --mac"
		if mac == nil && len(pl.Boxes) == 2 {
			mac, why = p.Rules[1-i].excluded(), fmt.Sprintf("from %s's rules (! --mac-source)", pl.Boxes[1-i].Node)
		}
		if mac == nil {
			mac, why = labMAC(b.Addr), "generated: 02:00 and the IPv4 address"
		}
		b.MAC = mac.String()
		pl.Mappings = append(pl.Mappings, Mapping{Box: b.Node, From: "MAC", To: b.MAC, Why: why})
		// The box's lab interface takes the name the config gives it, so
		// keepalived runs the config as written.
		b.LabInterface = b.Interface
		if !ifaceName.MatchString(b.Interface) {
			b.LabInterface = labIface
		}
		var renamed []string
		for _, n := range interfaces(p.Configs[i]) {
			if n.Name != b.LabInterface && !slices.Contains(renamed, n.Name) {
				renamed = append(renamed, n.Name)
				pl.Mappings = append(pl.Mappings, Mapping{Box: b.Node, From: "interface " + n.Name, To: b.LabInterface,
					Why: n.Pos.String() + " and wherever the config names it: the lab's box has one interface, on the bridge"})
			}
		}
	}
	pl.Topology = pl.topology()
	return pl, nil
}

// LoadPair reads the boxes' configs (two, or three or four) and, where
// given, their iptables rules: none, or one file per config ("" for a
// box without).
func LoadPair(configs []string, rules []string) (*Pair, error) {
	n := len(configs)
	if len(rules) != 0 && len(rules) != n {
		return nil, fmt.Errorf("%d iptables rules files for %d configs: give one per box, in the configs' order", len(rules), n)
	}
	p := &Pair{Paths: configs, Configs: make([]*keepalivedconf.Config, n), Rules: make([]*Rules, n),
		MACs: make([]net.HardwareAddr, n), Addrs: make([]netip.Addr, n), Ports: map[uint32][]uint16{}}
	for i := range configs {
		c, err := keepalivedconf.Load(configs[i])
		if err != nil {
			return nil, err
		}
		p.Configs[i] = c
		if len(rules) == 0 || rules[i] == "" {
			continue
		}
		text, err := keepalivedconf.ReadFile(rules[i], keepalivedconf.MaxFileBytes)
		if err != nil {
			return nil, err
		}
		if p.Rules[i], err = ParseRules(rules[i], text); err != nil {
			return nil, err
		}
	}
	return p, nil
}
