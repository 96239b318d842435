// The boxes: each one's address, and the order VRRP elects them in.

package check

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// addresses finds each box's own address: --addr, unicast_src_ip or
// mcast_src_ip, else the one address the other boxes' unicast_peer lists
// name and its own does not (peerOf), else the realservers every config
// lists, those in a VIP's subnet first, in the order the first config
// lists them (assumed, and said so).
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
