// Package check is `lvslab check`: a user's own pair of keepalived
// configs, the lab derived from them, and the fix written for them.
//
// Derive reads the two boxes' addresses, the VIPs and the virtual
// services out of the configs and builds a lab topology around them;
// every name it maps onto the lab (interfaces, paths) and every guess it
// makes is listed in Plan.Mappings. Prescribe writes the fwmark guard for
// that pair: the iptables rules with its VIPs, ports, marks and MACs, and
// the configs with each address service declared by its mark. Runs gives
// the two ways the scenarios run the pair: as given, and as prescribed.
package check

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
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

// addresses finds each box's own address: unicast_src_ip or
// mcast_src_ip, else the other config's only unicast_peer, else the
// realservers both configs list that are in a VIP's subnet, in the order
// the first config lists them (the first two of more, assumed and said
// so).
func (pl *Plan) addresses(p *Pair) error {
	// A VIP given without a prefix (the usual form) is a /32: the boxes'
	// subnet is then taken as the lab's is (labNet).
	var nets []netip.Prefix
	for _, v := range pl.VIPs {
		nets = append(nets, labNet(v, realservers(p)))
	}
	// The realservers every config lists, in box 1's order: those in a
	// VIP's subnet first, then the rest (a public VIP with the boxes on
	// a private link has none in its subnet).
	listedByAll := func(a netip.Addr) bool {
		return !slices.ContainsFunc(p.Configs, func(c *keepalivedconf.Config) bool { return !lists(c, a) })
	}
	var inNet, outside []netip.Addr
	for _, vs := range p.Configs[0].VirtualServers {
		for _, rs := range vs.RealServers {
			switch a := rs.Addr; {
			case !listedByAll(a) || slices.Contains(inNet, a) || slices.Contains(outside, a):
			case inAny(nets, a):
				inNet = append(inNet, a)
			default:
				outside = append(outside, a)
			}
		}
	}
	candidates := append(inNet, outside...)
	for i := range pl.Boxes {
		b, own := &pl.Boxes[i], p.Configs[i].Instances[0]
		switch peer := p.peerOf(i); {
		case p.Addrs[i].IsValid():
			b.Addr = p.Addrs[i]
			pl.Mappings = append(pl.Mappings, Mapping{Box: b.Node, From: "address", To: b.Addr.String(), Why: "given by --addr"})
		case own.UnicastSrc.IsValid():
			b.Addr = own.UnicastSrc
		case own.McastSrc.IsValid():
			b.Addr = own.McastSrc
		case peer.IsValid():
			b.Addr = peer
		}
	}
	taken := func(a netip.Addr) bool { return slices.ContainsFunc(pl.Boxes, func(b Box) bool { return b.Addr == a }) }
	for i := range pl.Boxes {
		b := &pl.Boxes[i]
		if b.Addr.IsValid() {
			continue
		}
		for _, a := range candidates {
			if !taken(a) {
				b.Addr = a
				break
			}
		}
		if !b.Addr.IsValid() {
			return fmt.Errorf("%s: cannot tell this box's address (no unicast_src_ip, no unicast_peer on the other boxes that names it, no realserver left that every config lists): give --addr %s=IP", b.Config, b.Node)
		}
		why := "assumed: a realserver every config lists, so the boxes are realservers too; the configs do not say which box is which (--addr to set)"
		if len(candidates) > len(pl.Boxes) {
			why = fmt.Sprintf("assumed: the first %d of the %d realservers every config lists (%v, those in a VIP's subnet first) are the boxes, in box 1's order; the configs do not say which (--addr to set)",
				len(pl.Boxes), len(candidates), candidates)
		}
		pl.Mappings = append(pl.Mappings, Mapping{Box: b.Node, From: "address", To: b.Addr.String(), Assumed: true, Why: why})
	}
	for i, b := range pl.Boxes {
		if j := slices.IndexFunc(pl.Boxes[:i], func(o Box) bool { return o.Addr == b.Addr }); j >= 0 {
			return fmt.Errorf("%s and %s derive the same address %s: give --addr %s=IP --addr %s=IP", pl.Boxes[j].Node, b.Node, b.Addr, pl.Boxes[j].Node, b.Node)
		}
	}
	for _, b := range pl.Boxes {
		if slices.ContainsFunc(pl.VIPs, func(v netip.Prefix) bool { return v.Addr() == b.Addr }) {
			return fmt.Errorf("%s: %s's address %s is a VIP: a box's own address is not the one that moves", b.Config, b.Node, b.Addr)
		}
	}
	return nil
}

// peerOf is box i's address as the other configs' unicast_peer lists
// say: the one address each of them lists that box i's own does not
// (a pair: the other box's only peer); zero when they do not tell.
func (p *Pair) peerOf(i int) netip.Addr {
	var found netip.Addr
	for j, c := range p.Configs {
		if j == i {
			continue
		}
		var left []netip.Addr
		for _, a := range c.Instances[0].UnicastPeers {
			if !slices.Contains(p.Configs[i].Instances[0].UnicastPeers, a) {
				left = append(left, a)
			}
		}
		if len(left) != 1 || found.IsValid() && found != left[0] {
			return netip.Addr{}
		}
		found = left[0]
	}
	return found
}

// services pairs the boxes' virtual servers: by address and port, or by
// position for fwmark services (each box may use its own mark).
func (pl *Plan) services(p *Pair) error {
	n := len(p.Configs)
	marked := make([][]*keepalivedconf.VirtualServer, n)
	byAddr := map[string]*Service{}
	for i, c := range p.Configs {
		for _, vs := range c.VirtualServers {
			switch {
			case vs.Protocol != "TCP" && vs.Protocol != "UDP":
				return fmt.Errorf("%s: virtual_server %s: %s services are not supported yet (TCP and UDP only)", vs.Pos, vs.Key(), vs.Protocol)
			case vs.Mark != 0:
				marked[i] = append(marked[i], vs)
				continue
			case vs.Group == "" && vs.Port == 0:
				return fmt.Errorf("%s: virtual_server %s: port 0, every port of the VIP (persistent): not supported yet", vs.Pos, vs.Key())
			}
			addrs, err := addressServices(c, vs)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				s := byAddr[a.Key]
				if s == nil {
					s = a
					s.Servers, s.Marks = make([]*keepalivedconf.VirtualServer, n), make([]uint32, n)
					byAddr[a.Key] = s
					pl.Services = append(pl.Services, s)
				} else if !slices.Equal(s.Ports, a.Ports) {
					return fmt.Errorf("%s: %s: ports %v here, %v on the other box", vs.Pos, a.Key, a.Ports, s.Ports)
				}
				s.Servers[i] = vs
			}
		}
	}
	for i := range marked[1:] {
		if len(marked[0]) != len(marked[i+1]) {
			return fmt.Errorf("%s declares %d fwmark services, %s %d: cannot pair them", p.Paths[0], len(marked[0]), p.Paths[i+1], len(marked[i+1]))
		}
	}
	for k := range marked[0] {
		s := &Service{Key: marked[0][k].Key(), Protocol: "tcp", Kind: marked[0][k].LBKind}
		for i := range marked {
			s.Marks, s.Servers = append(s.Marks, marked[i][k].Mark), append(s.Servers, marked[i][k])
		}
		for i := range marked {
			if p.Rules[i] != nil {
				for _, r := range p.Rules[i].Setting(s.Marks[i]) {
					s.VIP, s.Protocol = r.Dst, cmp.Or(r.Proto, s.Protocol)
					if !slices.Contains(s.Ports, r.Port) {
						s.Ports = append(s.Ports, r.Port)
					}
				}
			}
		}
		if ports := p.Ports[s.Marks[0]]; len(ports) > 0 {
			s.Ports = ports
		}
		if len(s.Ports) == 0 {
			return fmt.Errorf("%s: virtual_server fwmark %d: no iptables rule sets that mark; give the rules (--iptables) or --port %d=PORT", marked[0][k].Pos, s.Marks[0], s.Marks[0])
		}
		if !s.VIP.IsValid() {
			s.VIP = pl.VIPs[0].Addr()
		}
		pl.Services = append(pl.Services, s)
	}
	for _, s := range pl.Services {
		if i := slices.Index(s.Servers, nil); i >= 0 {
			return fmt.Errorf("service %s is not declared on %s (%s)", s.Key, pl.Boxes[i].Node, p.Paths[i])
		}
		for _, vs := range s.Servers {
			for _, rs := range vs.RealServers {
				if pl.boxAt(rs.Addr) < 0 && !slices.Contains(pl.Realservers, rs.Addr) {
					pl.Realservers = append(pl.Realservers, rs.Addr)
				}
			}
		}
	}
	return nil
}

// addressServices are the services virtual server vs declares by
// address: its own ADDRESS PORT, or one per address of its
// virtual_server_group with that address's ports (keepalived makes an
// IPVS service of each address and port).
func addressServices(c *keepalivedconf.Config, vs *keepalivedconf.VirtualServer) ([]*Service, error) {
	if vs.Group == "" {
		return []*Service{{Key: vs.Key(), VIP: vs.Addr, Ports: []uint16{vs.Port}, Protocol: strings.ToLower(vs.Protocol), Kind: vs.LBKind}}, nil
	}
	var out []*Service
	for _, e := range c.ServerGroups[vs.Group].Entries {
		if e.Mark != 0 {
			return nil, fmt.Errorf("%s: virtual_server_group %s: fwmark entries in a group are not supported yet", e.Pos, vs.Group)
		}
		for a := e.First; a.IsValid() && a.Compare(e.Last) <= 0; a = a.Next() {
			k := slices.IndexFunc(out, func(s *Service) bool { return s.VIP == a })
			if k < 0 {
				out = append(out, &Service{Key: fmt.Sprintf("group %s %s %s", vs.Group, vs.Protocol, a), VIP: a, Protocol: strings.ToLower(vs.Protocol), Kind: vs.LBKind})
				k = len(out) - 1
			}
			if !slices.Contains(out[k].Ports, e.Port) {
				out[k].Ports = append(out[k].Ports, e.Port)
			}
		}
	}
	return out, nil
}

// ipvsServices is how many IPVS services keepalived makes of vs: one, or
// one per address and port of its group.
func ipvsServices(c *keepalivedconf.Config, vs *keepalivedconf.VirtualServer) int {
	if vs.Group == "" {
		return 1
	}
	n := 0
	for _, e := range c.ServerGroups[vs.Group].Entries {
		if e.Mark != 0 {
			n++
			continue
		}
		n += int(e.Last.As4()[3]) - int(e.First.As4()[3]) + 1
	}
	return n
}

// subnetAndClient finds the lab's subnet, the boxes' link: the first
// VIP's subnet that holds both boxes (labNet, when the config gives a
// host route), else the one around the boxes' own addresses, the VIPs
// outside it reached by a route; and client addresses nobody uses, from
// the top.
func (pl *Plan) subnetAndClient(p *Pair) error {
	near := realservers(p)
	holdsBoxes := func(n netip.Prefix) bool {
		return !slices.ContainsFunc(pl.Boxes, func(b Box) bool { return !n.Contains(b.Addr) })
	}
	var addrs []string
	for _, b := range pl.Boxes {
		addrs = append(addrs, b.Addr.String())
	}
	for _, v := range pl.VIPs {
		if n := labNet(v, near); holdsBoxes(n) {
			pl.Subnet = n
			if n != v.Masked() {
				pl.Mappings = append(pl.Mappings, Mapping{From: "VIP " + v.String(), To: "subnet " + n.String(), Assumed: true,
					Why: "the config gives the VIP without its subnet; the lab's bridge needs one for the boxes and the client: the /24 around it, or the smallest that also holds the realservers and box addresses the configs give near it (within its /16)"})
			}
			break
		}
	}
	if !pl.Subnet.IsValid() {
		pl.Subnet = labNet(netip.PrefixFrom(pl.Boxes[0].Addr, 32), near)
		if !holdsBoxes(pl.Subnet) {
			return fmt.Errorf("%s: the boxes' addresses %s share no subnet within a /16: the lab puts the boxes on one link, as VRRP and DR need", pl.Boxes[0].Config, strings.Join(addrs, ", "))
		}
		pl.Mappings = append(pl.Mappings, Mapping{From: "boxes " + strings.Join(addrs, ", "), To: "subnet " + pl.Subnet.String(), Assumed: true,
			Why: "no VIP's subnet holds both boxes, and the configs give the boxes' addresses without theirs: the /24 around them, or the smallest that also holds the realservers near them (within their /16)"})
	}
	for _, v := range pl.VIPs {
		if !pl.Subnet.Contains(v.Addr()) {
			pl.Mappings = append(pl.Mappings, Mapping{From: "VIP " + v.Addr().String(), To: "a route on " + pl.Subnet.String(),
				Why: "outside the boxes' subnet: the lab's client, on their link, reaches it by a route on that link, as your clients reach it through a router; the MASTER answers ARP for it there"})
		}
	}
	var used []netip.Addr
	for _, b := range pl.Boxes {
		used = append(used, b.Addr)
	}
	used = append(used, pl.Realservers...)
	for _, v := range pl.VIPs {
		used = append(used, v.Addr())
	}
	for a := lastHost(pl.Subnet); len(pl.Clients) < clients && pl.Subnet.Contains(a); a = a.Prev() {
		if !slices.Contains(used, a) && a != pl.Subnet.Masked().Addr() {
			pl.Clients = append(pl.Clients, a)
		}
	}
	if len(pl.Clients) == 0 {
		return fmt.Errorf("%s: the boxes, realservers and VIPs take every address of %s: no address is left for the lab's client", pl.Boxes[0].Config, pl.Subnet)
	}
	pl.Mappings = append(pl.Mappings, Mapping{From: "client", To: fmt.Sprintf("%s (%d addresses from %s down)", pl.Clients[0], len(pl.Clients), pl.Clients[0]),
		Why: "unused addresses of the boxes' subnet: IPVS persistence and source hashing decide per client address"})
	return nil
}

// unreachable moves the realservers outside the lab's subnet from
// Realservers to Unreachable, and says what that means: IPVS-DR hands a
// packet to the realserver's MAC on the directors' link, so one that is
// not on it gets nothing; a checker takes it out of the tables, and
// without one its share of the connections fails.
func (pl *Plan) unreachable() {
	pl.Realservers = slices.DeleteFunc(pl.Realservers, func(a netip.Addr) bool {
		if pl.Subnet.Contains(a) {
			return false
		}
		pl.Unreachable = append(pl.Unreachable, a)
		then := "its checker takes it out of the tables"
		if !pl.checked(a) {
			then = "with no checker on it, IPVS keeps sending it a share, and those connections fail"
		}
		pl.Mappings = append(pl.Mappings, Mapping{From: "realserver " + a.String(), To: "unreachable", Assumed: true,
			Why: fmt.Sprintf("outside %s, the directors' link, which DR needs the realservers on: the lab runs it unreachable, as your boxes are if it is not on their link; %s", pl.Subnet, then)})
		return true
	})
	for _, s := range pl.Services {
		for i, vs := range s.Servers {
			if !slices.ContainsFunc(vs.RealServers, func(rs *keepalivedconf.RealServer) bool { return pl.reachable(rs.Addr) }) {
				pl.Mappings = append(pl.Mappings, Mapping{Box: pl.Boxes[i].Node, From: s.Key, To: "no reachable realserver", Assumed: true,
					Why: "as MASTER, " + pl.Boxes[i].Node + " balances only to realservers the lab cannot reach: every connection fails"})
			}
		}
	}
}

// differences lists, per service whose boxes list different
// realservers, what each box sends to once it is MASTER.
func (pl *Plan) differences() {
	for _, s := range pl.Services {
		sets := make([][]netip.Addr, len(s.Servers))
		for i, vs := range s.Servers {
			for _, rs := range vs.RealServers {
				if rs.Weight > 0 {
					sets[i] = append(sets[i], rs.Addr)
				}
			}
			slices.SortFunc(sets[i], netip.Addr.Compare)
		}
		if !slices.ContainsFunc(sets[1:], func(set []netip.Addr) bool { return !slices.Equal(set, sets[0]) }) {
			continue
		}
		all := slices.Compact(slices.SortedFunc(slices.Values(slices.Concat(sets...)), netip.Addr.Compare))
		var each, only []string
		for i, set := range sets {
			verb := " to "
			if i == 0 {
				verb = " sends to "
			}
			each = append(each, pl.Boxes[i].Node+verb+fmt.Sprint(set))
			var missing []string
			for _, a := range all {
				if !slices.Contains(set, a) {
					missing = append(missing, a.String())
				}
			}
			if len(missing) > 0 {
				only = append(only, fmt.Sprintf("as MASTER, %s sends nothing to %s", pl.Boxes[i].Node, strings.Join(missing, ", ")))
			}
		}
		pl.Differences = append(pl.Differences, fmt.Sprintf("%s: %s: %s", s.Key, strings.Join(each, ", "), strings.Join(only, "; ")))
	}
}

// reachable reports whether realserver a is on the directors' link.
func (pl *Plan) reachable(a netip.Addr) bool { return !slices.Contains(pl.Unreachable, a) }

// checked reports whether every service's real_server a has a checker.
func (pl *Plan) checked(a netip.Addr) bool {
	for _, s := range pl.Services {
		for _, vs := range s.Servers {
			for _, rs := range vs.RealServers {
				if rs.Addr == a && len(rs.Checks) == 0 {
					return false
				}
			}
		}
	}
	return true
}

// clients is how many client addresses the workload comes from: with 16,
// source hashing over two boxes sends them all to one with odds 2/65536.
const clients = 16

// labNet is the subnet the lab puts a VIP in: its own; or, when the
// config gives a longer prefix (a bare address), the /24 around it, or
// the longest prefix that also holds the realservers within the /16
// around it (those further away are another network's).
func labNet(vip netip.Prefix, realservers []netip.Addr) netip.Prefix {
	if vip.Bits() <= 24 {
		return vip.Masked()
	}
	near := netip.PrefixFrom(vip.Addr(), 16).Masked()
	for bits := 24; ; bits-- {
		p := netip.PrefixFrom(vip.Addr(), bits).Masked()
		if bits == 16 || !slices.ContainsFunc(realservers, func(a netip.Addr) bool { return near.Contains(a) && !p.Contains(a) }) {
			return p
		}
	}
}

// realservers are the addresses every virtual server of the pair lists,
// and the boxes' own where the configs show them (unicast, mcast_src_ip):
// what the VIP's subnet should hold.
func realservers(p *Pair) []netip.Addr {
	var out []netip.Addr
	for _, c := range p.Configs {
		for _, in := range c.Instances {
			out = append(append(out, in.UnicastSrc, in.McastSrc), in.UnicastPeers...)
		}
		for _, vs := range c.VirtualServers {
			for _, rs := range vs.RealServers {
				out = append(out, rs.Addr)
			}
		}
	}
	return out
}

func lastHost(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 2
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Masked().Contains(a) {
			return true
		}
	}
	return false
}

// labMAC is the lab's MAC for an IPv4 address: 02:00 and its four bytes.
func labMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x00, b[0], b[1], b[2], b[3]}
}

// topology is the lab: a bridge, the client, the two boxes (directors and
// realservers), and any other realserver.
func (pl *Plan) topology() *lab.Topology {
	bits := pl.Subnet.Bits()
	mysql := slices.ContainsFunc(pl.Services, func(s *Service) bool { return slices.Contains(s.Ports, lab.MySQLPort) })
	node := func(name string, roles []string, a netip.Addr, mac, iface string) lab.Node {
		n := lab.Node{Name: name, Roles: roles, Interfaces: []lab.Interface{{Name: iface, Bridge: "lan", MAC: mac,
			Addresses: []string{netip.PrefixFrom(a, bits).String()}}}}
		if slices.Contains(roles, lab.RoleRealserver) {
			n.Sysctls = map[string]string{"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2", "net.ipv4.ip_forward": "0"}
			if mysql {
				n.Services = []string{lab.ServiceMySQL}
			}
		}
		return n
	}
	t := &lab.Topology{Name: "check", VIP: pl.VIPs[0].Addr().String(), Bridges: []lab.Bridge{{Name: "lan"}}}
	cl := node("client", []string{lab.RoleClient}, pl.Clients[0], labMAC(pl.Clients[0]).String(), labIface)
	for _, a := range pl.Clients[1:] {
		cl.Interfaces[0].Addresses = append(cl.Interfaces[0].Addresses, netip.PrefixFrom(a, bits).String())
	}
	for k, v := range pl.VIPs {
		if k > 0 {
			t.VIPs = append(t.VIPs, v.Addr().String())
		}
		if !pl.Subnet.Contains(v.Addr()) {
			cl.Interfaces[0].Routes = append(cl.Interfaces[0].Routes, netip.PrefixFrom(v.Addr(), 32).String())
		}
	}
	t.Nodes = append(t.Nodes, cl)
	// The lab starts the first director first and expects it to be
	// MASTER: the box that wins the election.
	for _, i := range pl.electionOrder() {
		b := pl.Boxes[i]
		roles := []string{lab.RoleDirector}
		if pl.balancesTo(b.Addr) { // a box that serves too, as the seed's
			roles = append(roles, lab.RoleRealserver)
		}
		t.Nodes = append(t.Nodes, node(b.Node, roles, b.Addr, b.MAC, b.LabInterface))
	}
	rs := slices.Clone(pl.Realservers)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Less(rs[j]) })
	for k, a := range rs {
		t.Nodes = append(t.Nodes, node(fmt.Sprintf("rs%d", k+1), []string{lab.RoleRealserver}, a, labMAC(a).String(), labIface))
	}
	return t
}

// interfaces are the lines of c that name an interface, and the name:
// an instance's interface and track_interface, a VIP's dev, the sync
// daemon's.
func interfaces(c *keepalivedconf.Config) []keepalivedconf.Named {
	var out []keepalivedconf.Named
	add := func(pos keepalivedconf.Pos, name string) {
		if name != "" {
			out = append(out, keepalivedconf.Named{Pos: pos, Name: name})
		}
	}
	if sd := c.Global.SyncDaemon; sd != nil {
		add(sd.Pos, sd.Interface)
	}
	for _, in := range c.Instances {
		add(in.InterfacePos, in.Interface)
		add(in.SyncInterfacePos, in.SyncInterface)
		out = append(out, in.TrackInterfaces...)
		for _, v := range in.VIPs {
			add(v.Pos, v.Dev)
		}
	}
	return out
}

// lists reports whether a virtual server of c lists realserver a.
func lists(c *keepalivedconf.Config, a netip.Addr) bool {
	return slices.ContainsFunc(c.VirtualServers, func(vs *keepalivedconf.VirtualServer) bool {
		return slices.ContainsFunc(vs.RealServers, func(rs *keepalivedconf.RealServer) bool { return rs.Addr == a })
	})
}

// balancesTo reports whether a service of the pair lists a as a
// realserver.
func (pl *Plan) balancesTo(a netip.Addr) bool {
	return slices.ContainsFunc(pl.Services, func(s *Service) bool { return slices.Contains(s.realservers(), a) })
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

// instancesAgree pairs the boxes' VRRP instances by virtual_router_id:
// which box VRRP makes MASTER of each VIP (by priority, then state), and
// why the lab cannot run them, or "": an instance on one box only.
// Active-active pairs, each box MASTER of its own VIPs, run service by
// service, the MASTER of the service's VIP first.
func instancesAgree(p *Pair) (map[netip.Addr]int, string) {
	masters := map[netip.Addr]int{}
	for _, a := range p.Configs[0].Instances {
		ins := []*keepalivedconf.Instance{a}
		for j, c := range p.Configs[1:] {
			k := slices.IndexFunc(c.Instances, func(b *keepalivedconf.Instance) bool { return b.VRID == a.VRID })
			if k < 0 {
				return nil, fmt.Sprintf("%s: vrrp_instance %s (virtual_router_id %d) has no peer in %s", a.Pos, a.Name, a.VRID, p.Paths[j+1])
			}
			ins = append(ins, c.Instances[k])
		}
		w := 0
		for j, in := range ins {
			if secondWins(Box{State: ins[w].State, Priority: ins[w].Priority}, Box{State: in.State, Priority: in.Priority}) {
				w = j
			}
		}
		for _, in := range ins {
			for _, v := range in.VIPs {
				masters[v.Prefix.Addr()] = w
			}
		}
	}
	for j, c := range p.Configs[1:] {
		if n, m := len(p.Configs[0].Instances), len(c.Instances); n != m {
			return nil, fmt.Sprintf("%s has %d vrrp_instance, %s %d: an instance on one box only", p.Paths[0], n, p.Paths[j+1], m)
		}
	}
	return masters, ""
}

// electionOrder is the boxes' indexes, the one VRRP makes MASTER first:
// the higher priority, then state MASTER, then the order given.
func (pl *Plan) electionOrder() []int {
	order := make([]int, len(pl.Boxes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case secondWins(pl.Boxes[a], pl.Boxes[b]):
			return 1
		case secondWins(pl.Boxes[b], pl.Boxes[a]):
			return -1
		}
		return 0
	})
	return order
}

// secondWins says whether VRRP makes b MASTER rather than a.
func secondWins(a, b Box) bool {
	return b.Priority > a.Priority || b.Priority == a.Priority && b.State == "MASTER" && a.State != "MASTER"
}

// box is the index of the box called node, or -1.
func (pl *Plan) box(node string) int {
	return slices.IndexFunc(pl.Boxes, func(b Box) bool { return b.Node == node })
}

// boxAt is the index of the box whose address is a, or -1.
func (pl *Plan) boxAt(a netip.Addr) int {
	return slices.IndexFunc(pl.Boxes, func(b Box) bool { return b.Addr == a })
}

// Backup is the node VRRP makes BACKUP at the start: the one the
// switchover raises.
func (pl *Plan) Backup() string { return pl.Boxes[pl.electionOrder()[1]].Node }
