// The virtual services, paired across the boxes.

package check

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

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
	for _, s := range pl.Services {
		pl.noProtocol(s)
	}
	for i := range marked[1:] {
		if len(marked[0]) != len(marked[i+1]) {
			return fmt.Errorf("%s declares %d fwmark services, %s %d: cannot pair them", p.Paths[0], len(marked[0]), p.Paths[i+1], len(marked[i+1]))
		}
	}
	for k := range marked[0] {
		s, err := pl.markService(p, marked, k)
		if err != nil {
			return err
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

// markService is the k-th fwmark service of each box's marked, paired:
// its VIP, protocol and ports from the rules that set its marks (or
// --port), else the first VIP.
func (pl *Plan) markService(p *Pair, marked [][]*keepalivedconf.VirtualServer, k int) (*Service, error) {
	first := marked[0][k]
	s := &Service{Key: first.Key(), Protocol: "tcp", Kind: first.LBKind}
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
		return nil, fmt.Errorf("%s: virtual_server fwmark %d: no iptables rule sets that mark; give the rules (--iptables) or --port %d=PORT", first.Pos, s.Marks[0], s.Marks[0])
	}
	if !s.VIP.IsValid() {
		s.VIP = pl.VIPs[0].Addr()
	}
	return s, nil
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

// noProtocol handles a service by address whose virtual_server gives no
// protocol on any box: keepalived makes it UDP (its own default, the
// kernel's for protocol 0), so no IPVS service balances TCP to it and the
// MASTER takes TCP connections to the VIP itself. The lab's clients speak
// TCP to it, as the clients of a web, database or API service do: the
// pair as given balances none of their connections. Assumed, and said so.
func (pl *Plan) noProtocol(s *Service) {
	for _, vs := range s.Servers {
		if vs.ProtocolPos.Line != 0 {
			return
		}
	}
	s.Protocol, s.KeepalivedUDP = "tcp", true
	pl.Mappings = append(pl.Mappings, Mapping{From: fmt.Sprintf("virtual_server %s (%s)", strings.TrimPrefix(s.Key, "UDP "), s.Servers[0].Pos),
		To: "UDP in IPVS; the lab's clients speak TCP", Assumed: true,
		Why: "it gives no protocol, so keepalived makes it a UDP service (\"no protocol set - defaulting to UDP\"): no IPVS service balances TCP to it, and the MASTER takes TCP connections to the VIP itself; the lab's clients speak TCP, as a web, database or API service's do"})
}
