package check

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// validate refuses, with file:line, what no lab can be derived from:
// IPv6 (the lab is IPv4), box addresses that cannot be a host's, MACs
// that cannot be a box's, and a VRID twice on one interface (keepalived
// refuses the second instance).
func validate(p *Pair) error {
	for i, c := range p.Configs {
		vrids := map[string]keepalivedconf.Pos{}
		for _, in := range c.Instances {
			for _, v := range in.VIPs {
				if err := ipv4(v.Pos, "virtual_ipaddress", v.Prefix.Addr()); err != nil {
					return err
				}
			}
			for _, a := range append([]netip.Addr{in.UnicastSrc, in.McastSrc}, in.UnicastPeers...) {
				if err := boxAddr(in.Pos, "vrrp_instance "+in.Name+": source or peer address", a); err != nil {
					return err
				}
			}
			if in.VRID == 0 {
				return keepalivedconf.Errorf(in.Pos, "vrrp_instance %s: no virtual_router_id: keepalived refuses it (\"the virtual router id must be set\")", in.Name)
			}
			key := fmt.Sprintf("%s/%d", in.Interface, in.VRID)
			if first, ok := vrids[key]; ok {
				return keepalivedconf.Errorf(in.Pos, "vrrp_instance %s: virtual_router_id %d on %s again (first at %s): keepalived refuses a second instance of one VRID on one interface",
					in.Name, in.VRID, in.Interface, first)
			}
			vrids[key] = in.Pos
		}
		for _, vs := range c.VirtualServers {
			if err := ipv4(vs.Pos, "virtual_server", vs.Addr); err != nil {
				return err
			}
			for _, rs := range vs.RealServers {
				if err := ipv4(rs.Pos, "real_server", rs.Addr); err != nil {
					return err
				}
			}
		}
		if err := boxAddr(keepalivedconf.Pos{File: "--addr d" + fmt.Sprint(i+1)}, "address", p.Addrs[i]); err != nil {
			return err
		}
		if m := p.MACs[i]; m != nil && (len(m) != 6 || m[0]&1 != 0 || bytes.Equal(m, make(net.HardwareAddr, 6))) {
			return fmt.Errorf("--mac d%d=%s: want a box's MAC: 6 bytes, unicast, not all zero", i+1, m)
		}
	}
	for i, m := range p.MACs {
		for j := range i {
			if m != nil && bytes.Equal(m, p.MACs[j]) {
				return fmt.Errorf("--mac: d%d and d%d both %s: the guard tells the boxes apart by MAC", j+1, i+1, m)
			}
		}
	}
	return nil
}

// ipv4 refuses an IPv6 address a config gives (zero: none given).
func ipv4(pos keepalivedconf.Pos, what string, a netip.Addr) error {
	if a.IsValid() && !a.Unmap().Is4() {
		return keepalivedconf.Errorf(pos, "%s %s: IPv6: lvslab check runs IPv4 pairs only, for now", what, a)
	}
	return nil
}

// boxAddr refuses what cannot be a box's own address: IPv6, or no
// host's unicast address (0.0.0.0, broadcast, multicast, loopback).
func boxAddr(pos keepalivedconf.Pos, what string, a netip.Addr) error {
	if err := ipv4(pos, what, a); err != nil || !a.IsValid() {
		return err
	}
	if a = a.Unmap(); a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || a.IsMulticast() || a.IsLoopback() {
		return keepalivedconf.Errorf(pos, "%s %s: not a host's unicast address", what, a)
	}
	return nil
}
