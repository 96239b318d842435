// Package director is the Go LVS-DR director for two-box clusters: its
// config, VRRP, the loop guard, health checks, the IPVS sync daemons, and
// (this file) its IPVS layer: the desired virtual services as plain data,
// a reconcile that moves the kernel's table toward them idempotently and
// touches only services the director owns, a map-backed fake for unit
// tests, and an ipvsadm-like rendering for golden files.
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

// id tells services apart as the kernel does, cheaper than Key in maps.
type serviceID struct {
	protocol string
	vip      netip.Addr
	port     uint16
	mark     uint32
}

func (s Service) id() serviceID {
	if s.Mark != 0 {
		return serviceID{mark: s.Mark}
	}
	return serviceID{s.Protocol, s.VIP, s.Port, 0}
}

// Key names the service the way ipvsadm does: "TCP 192.168.1.200:3306" or
// "FWM 3".
func (s Service) Key() string {
	if s.Mark != 0 {
		return fmt.Sprintf("FWM %d", s.Mark)
	}
	return fmt.Sprintf("%s %s", strings.ToUpper(s.Protocol), netip.AddrPortFrom(s.VIP, s.Port))
}

// servicesOn lists the address services of table on vips, whatever their
// port and protocol: the services a Reconcile may own (its previous).
func servicesOn(table []Service, vips []netip.Addr) []Service {
	var out []Service
	for _, s := range table {
		if s.Mark == 0 && slices.Contains(vips, s.VIP) {
			out = append(out, Service{Protocol: s.Protocol, VIP: s.VIP, Port: s.Port})
		}
	}
	return out
}

// TableReader is an IPVS that reads its whole table, services with their
// destinations, in one pass (Kernel does).
type TableReader interface {
	Table() ([]Service, error)
}

// ReadTable reads h's table as Services: in one pass where h is a
// TableReader, else one destination dump per service.
func ReadTable(h IPVS) ([]Service, error) {
	if r, ok := h.(TableReader); ok {
		return r.Table()
	}
	return readByDumps(h)
}

func readByDumps(h IPVS) ([]Service, error) {
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	var out []Service
	for _, ks := range svcs {
		s := FromKernel(ks)
		dsts, err := h.GetDestinations(ks)
		if err != nil {
			return nil, fmt.Errorf("list destinations of %s: %w", s.Key(), err)
		}
		for _, x := range dsts {
			a := destAddrPort(x)
			s.Dests = append(s.Dests, Dest{Addr: a.Addr(), Port: a.Port(), Weight: x.Weight, Forward: ForwardName(x.ConnectionFlags)})
		}
		out = append(out, s)
	}
	return out, nil
}

// FromKernel is moby/ipvs's service as a Service, without destinations.
func FromKernel(ks *ipvs.Service) Service {
	s := Service{Mark: ks.FWMark, Scheduler: ks.SchedName}
	if ks.Flags&ipvsPersistent != 0 {
		s.Persistence = ks.Timeout
	}
	if ks.FWMark == 0 {
		a, _ := netip.AddrFromSlice(ks.Address)
		s.VIP, s.Port, s.Protocol = a.Unmap(), ks.Port, protoName(ks.Protocol)
	}
	return s
}

func protoName(p uint16) string {
	switch p {
	case syscall.IPPROTO_TCP:
		return "tcp"
	case syscall.IPPROTO_UDP:
		return "udp"
	case syscall.IPPROTO_SCTP:
		return "sctp"
	}
	return fmt.Sprintf("ip%d", p)
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

// ForwardName is the forwarding method of a destination's IPVS flags, as
// ipvsadm names it: Route, Masq, Tunnel, or Local (IP_VS_CONN_F_LOCALNODE).
func ForwardName(flags uint32) string {
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
	table, err := ReadTable(h)
	if err != nil {
		return Changes{}, err
	}
	return reconcileFrom(h, table, previous, desired)
}

// reconcileFrom is Reconcile given the table h has, as ReadTable read it:
// a no-op costs that one read and no request to the kernel.
func reconcileFrom(h IPVS, table, previous, desired []Service) (Changes, error) {
	var c Changes
	byID := map[serviceID]Service{}
	for _, s := range table {
		byID[s.id()] = s
	}
	want := map[serviceID]bool{}
	var errs []error
	for _, d := range desired {
		want[d.id()] = true
		cur, ok := byID[d.id()]
		switch {
		case !ok:
			if err := h.NewService(d.kernel()); err != nil {
				errs = append(errs, fmt.Errorf("add IPVS service %s: %w", d.Key(), err))
				continue
			}
			c.ServicesAdded++
		case cur.Scheduler != d.Scheduler || cur.Persistence != d.Persistence:
			if err := h.UpdateService(d.kernel()); err != nil {
				errs = append(errs, fmt.Errorf("update IPVS service %s: %w", d.Key(), err))
				continue
			}
			c.ServicesUpdated++
		}
		if err := applyDests(h, d, cur.Dests, &c); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range previous {
		cur, ok := byID[p.id()]
		if !ok || want[p.id()] {
			continue
		}
		if err := h.DelService(cur.kernel()); err != nil {
			errs = append(errs, fmt.Errorf("delete IPVS service %s: %w", p.Key(), err))
			continue
		}
		c.ServicesDeleted++
	}
	return c, errors.Join(errs...)
}

// destAddrPort is a kernel destination's address and port.
func destAddrPort(x *ipvs.Destination) netip.AddrPort {
	a, _ := netip.AddrFromSlice(x.Address)
	return netip.AddrPortFrom(a.Unmap(), x.Port)
}

func (d Dest) addrPort() netip.AddrPort { return netip.AddrPortFrom(d.Addr, d.Port) }

// applyDests makes service d's destinations in the kernel d.Dests, given
// those it has: adds, updates, deletes.
func applyDests(h IPVS, d Service, dests []Dest, c *Changes) error {
	var errs []error
	var svc *ipvs.Service
	ks := func() *ipvs.Service {
		if svc == nil {
			svc = d.kernel()
		}
		return svc
	}
	have := map[netip.AddrPort]Dest{}
	for _, x := range dests {
		have[x.addrPort()] = x
	}
	seen := map[netip.AddrPort]bool{}
	for _, dst := range d.Dests {
		ap := dst.addrPort()
		seen[ap] = true
		x, ok := have[ap]
		switch {
		case !ok:
			if err := h.NewDestination(ks(), dst.kernel()); err != nil {
				errs = append(errs, fmt.Errorf("add %s to %s: %w", ap, d.Key(), err))
			} else {
				c.DestsAdded++
			}
		case x.Weight != dst.Weight || x.Forward != dst.Forward:
			if err := h.UpdateDestination(ks(), dst.kernel()); err != nil {
				errs = append(errs, fmt.Errorf("update %s in %s: %w", ap, d.Key(), err))
			} else {
				c.DestsUpdated++
			}
		}
	}
	for _, x := range dests {
		if seen[x.addrPort()] {
			continue
		}
		if err := h.DelDestination(ks(), x.kernel()); err != nil {
			errs = append(errs, fmt.Errorf("delete %s from %s: %w", x.addrPort(), d.Key(), err))
		} else {
			c.DestsDeleted++
		}
	}
	return errors.Join(errs...)
}

// Render prints the table like `ipvsadm -Ln` without the header and
// counters, services and destinations sorted: the golden-file format.
func Render(h IPVS) (string, error) {
	table, err := ReadTable(h)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, s := range table {
		head := s.Key() + " " + s.Scheduler
		if s.Persistence != 0 {
			head += fmt.Sprintf(" persistent %d", s.Persistence)
		}
		var dl []string
		for _, d := range s.Dests {
			dl = append(dl, fmt.Sprintf("  -> %s %s %d", d.addrPort(), d.Forward, d.Weight))
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
