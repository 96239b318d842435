// The lab's link: its subnet, the client's addresses, which realservers it
// reaches, and the topology built on it.

package check

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// subnetAndClient finds the lab's subnet, the boxes' link: the first
// VIP's subnet that holds every box (labNet, when the config gives a
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
			Why: "no VIP's subnet holds every box, and the configs give the boxes' addresses without theirs: the /24 around them, or the smallest that also holds the realservers near them (within their /16)"})
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

// topology is the lab: a bridge, the client, the boxes (directors and
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
