// Package director is the Go LVS-DR director for two-box clusters. This
// first part is its IPVS layer: the desired virtual services as plain data,
// a reconcile that moves the kernel's table toward them idempotently and
// touches only services the director owns, a map-backed fake for unit
// tests, and an ipvsadm-like rendering for golden files. Config, the loop
// guard, VRRP and health checks come next (issue 4).
package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/ipvs"
)

// IPVS is the subset of *ipvs.Handle the director uses; the fake below
// implements it too.
type IPVS interface {
	GetServices() ([]*ipvs.Service, error)
	NewService(*ipvs.Service) error
	UpdateService(*ipvs.Service) error
	DelService(*ipvs.Service) error
	GetDestinations(*ipvs.Service) ([]*ipvs.Destination, error)
	NewDestination(*ipvs.Service, *ipvs.Destination) error
	UpdateDestination(*ipvs.Service, *ipvs.Destination) error
	DelDestination(*ipvs.Service, *ipvs.Destination) error
}

var _ IPVS = (*ipvs.Handle)(nil)

// Forwarding methods, as ipvsadm names them.
const (
	Route  = "Route"  // direct routing (LVS-DR)
	Masq   = "Masq"   // NAT
	Tunnel = "Tunnel" // IP-in-IP
)

// Service is a desired virtual service: by VIP:port/protocol, or by
// firewall mark when Mark is set.
type Service struct {
	Protocol  string // tcp or udp (ignored for fwmark services)
	VIP       netip.Addr
	Port      uint16
	Mark      uint32
	Scheduler string // any IPVS scheduler the kernel has: rr, wrr, lc, ...
	// Persistence is the persistent timeout in seconds; 0 for none.
	Persistence uint32
	Dests       []Dest
}

// Dest is a realserver of a Service.
type Dest struct {
	Addr    netip.Addr
	Port    uint16
	Weight  int
	Forward string // Route, Masq or Tunnel
}

// Key names the service the way ipvsadm does: "TCP 192.168.1.200:3306" or
// "FWM 3".
func (s Service) Key() string {
	if s.Mark != 0 {
		return fmt.Sprintf("FWM %d", s.Mark)
	}
	return fmt.Sprintf("%s %s", strings.ToUpper(s.Protocol), netip.AddrPortFrom(s.VIP, s.Port))
}

func serviceKey(s *ipvs.Service) string {
	if s.FWMark != 0 {
		return fmt.Sprintf("FWM %d", s.FWMark)
	}
	proto := "TCP"
	if s.Protocol == syscall.IPPROTO_UDP {
		proto = "UDP"
	}
	return fmt.Sprintf("%s %s", proto, net.JoinHostPort(s.Address.String(), fmt.Sprint(s.Port)))
}

// ServicesOn lists the kernel's address services on vips, whatever their
// port and protocol, as Services a Reconcile can own (its previous).
func ServicesOn(h IPVS, vips []netip.Addr) ([]Service, error) {
	actual, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	var out []Service
	for _, s := range actual {
		a, _ := netip.AddrFromSlice(s.Address)
		if s.FWMark != 0 || !slices.Contains(vips, a.Unmap()) {
			continue
		}
		proto := "tcp"
		if s.Protocol == syscall.IPPROTO_UDP {
			proto = "udp"
		}
		out = append(out, Service{Protocol: proto, VIP: a.Unmap(), Port: s.Port})
	}
	return out, nil
}

// kernel turns a desired Service into moby/ipvs's form.
func (s Service) kernel() *ipvs.Service {
	k := &ipvs.Service{AddressFamily: syscall.AF_INET, SchedName: s.Scheduler, Netmask: 0xffffffff}
	if s.Persistence > 0 {
		k.Flags, k.Timeout = ipvsPersistent, s.Persistence
	}
	if s.Mark != 0 {
		k.FWMark = s.Mark
		return k
	}
	k.Address, k.Port = net.IP(s.VIP.AsSlice()), s.Port
	k.Protocol = syscall.IPPROTO_TCP
	if s.Protocol == "udp" {
		k.Protocol = syscall.IPPROTO_UDP
	}
	return k
}

// IP_VS_SVC_F_PERSISTENT from linux/ip_vs.h.
const ipvsPersistent = 0x1

var forwardFlags = map[string]uint32{Masq: ipvs.ConnectionFlagMasq, Tunnel: ipvs.ConnectionFlagTunnel, Route: ipvs.ConnectionFlagDirectRoute}

func (d Dest) kernel() *ipvs.Destination {
	return &ipvs.Destination{AddressFamily: syscall.AF_INET, Address: net.IP(d.Addr.AsSlice()), Port: d.Port,
		Weight: d.Weight, ConnectionFlags: forwardFlags[d.Forward]}
}

func forwardName(flags uint32) string {
	for name, f := range forwardFlags {
		if flags&ipvs.ConnectionFlagFwdMask == f {
			return name
		}
	}
	return "Local"
}

// Changes counts what a Reconcile did.
type Changes struct {
	ServicesAdded, ServicesUpdated, ServicesDeleted int
	DestsAdded, DestsUpdated, DestsDeleted          int
}

// None reports a no-op.
func (c Changes) None() bool { return c == Changes{} }

// Reconcile moves the kernel's table toward desired. It owns the services
// in desired and those in previous (what it installed before, e.g. read
// back after a crash): owned services not desired are deleted; services of
// anyone else are left alone. Running it twice changes nothing the second
// time.
func Reconcile(h IPVS, previous, desired []Service) (Changes, error) {
	var c Changes
	actual, err := h.GetServices()
	if err != nil {
		return c, fmt.Errorf("list IPVS services: %w", err)
	}
	byKey := map[string]*ipvs.Service{}
	for _, s := range actual {
		byKey[serviceKey(s)] = s
	}
	want := map[string]bool{}
	var errs []error
	for _, d := range desired {
		want[d.Key()] = true
		ks := d.kernel()
		cur, ok := byKey[d.Key()]
		switch {
		case !ok:
			if err := h.NewService(ks); err != nil {
				errs = append(errs, fmt.Errorf("add IPVS service %s: %w", d.Key(), err))
				continue
			}
			c.ServicesAdded++
			// A new service has no destinations: no dump to ask for.
			if err := applyDests(h, ks, d, nil, &c); err != nil {
				errs = append(errs, err)
			}
			continue
		case cur.SchedName != ks.SchedName || cur.Flags&ipvsPersistent != ks.Flags || cur.Timeout != ks.Timeout:
			if err := h.UpdateService(ks); err != nil {
				errs = append(errs, fmt.Errorf("update IPVS service %s: %w", d.Key(), err))
				continue
			}
			c.ServicesUpdated++
		}
		if err := reconcileDests(h, ks, d, &c); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range previous {
		cur, ok := byKey[p.Key()]
		if !ok || want[p.Key()] {
			continue
		}
		if err := h.DelService(cur); err != nil {
			errs = append(errs, fmt.Errorf("delete IPVS service %s: %w", p.Key(), err))
			continue
		}
		c.ServicesDeleted++
	}
	return c, errors.Join(errs...)
}

func reconcileDests(h IPVS, ks *ipvs.Service, d Service, c *Changes) error {
	cur, err := h.GetDestinations(ks)
	if err != nil {
		return fmt.Errorf("list destinations of %s: %w", d.Key(), err)
	}
	have := map[netip.AddrPort]*ipvs.Destination{}
	for _, x := range cur {
		have[destAddrPort(x)] = x
	}
	return applyDests(h, ks, d, have, c)
}

// destAddrPort is a kernel destination's address and port.
func destAddrPort(x *ipvs.Destination) netip.AddrPort {
	a, _ := netip.AddrFromSlice(x.Address)
	return netip.AddrPortFrom(a.Unmap(), x.Port)
}

// applyDests makes service ks's destinations d's, given those it has: adds,
// updates, deletes.
func applyDests(h IPVS, ks *ipvs.Service, d Service, have map[netip.AddrPort]*ipvs.Destination, c *Changes) error {
	var errs []error
	seen := map[netip.AddrPort]bool{}
	for _, dst := range d.Dests {
		ap := netip.AddrPortFrom(dst.Addr, dst.Port)
		seen[ap] = true
		kd := dst.kernel()
		x, ok := have[ap]
		switch {
		case !ok:
			if err := h.NewDestination(ks, kd); err != nil {
				errs = append(errs, fmt.Errorf("add %s to %s: %w", ap, d.Key(), err))
			} else {
				c.DestsAdded++
			}
		case x.Weight != kd.Weight || x.ConnectionFlags&ipvs.ConnectionFlagFwdMask != kd.ConnectionFlags:
			if err := h.UpdateDestination(ks, kd); err != nil {
				errs = append(errs, fmt.Errorf("update %s in %s: %w", ap, d.Key(), err))
			} else {
				c.DestsUpdated++
			}
		}
	}
	for ap, x := range have {
		if seen[ap] {
			continue
		}
		if err := h.DelDestination(ks, x); err != nil {
			errs = append(errs, fmt.Errorf("delete %s from %s: %w", ap, d.Key(), err))
		} else {
			c.DestsDeleted++
		}
	}
	return errors.Join(errs...)
}

// Render prints the table like `ipvsadm -Ln` without the header and
// counters, services and destinations sorted: the golden-file format.
func Render(h IPVS) (string, error) {
	svcs, err := h.GetServices()
	if err != nil {
		return "", err
	}
	var lines []string
	for _, s := range svcs {
		head := serviceKey(s) + " " + s.SchedName
		if s.Flags&ipvsPersistent != 0 {
			head += fmt.Sprintf(" persistent %d", s.Timeout)
		}
		dsts, err := h.GetDestinations(s)
		if err != nil {
			return "", err
		}
		var dl []string
		for _, d := range dsts {
			dl = append(dl, fmt.Sprintf("  -> %s %s %d", net.JoinHostPort(d.Address.String(), fmt.Sprint(d.Port)), forwardName(d.ConnectionFlags), d.Weight))
		}
		slices.Sort(dl)
		lines = append(lines, strings.Join(append([]string{head}, dl...), "\n"))
	}
	slices.Sort(lines)
	if len(lines) == 0 {
		return "", nil
	}
	return strings.Join(lines, "\n") + "\n", nil
}
