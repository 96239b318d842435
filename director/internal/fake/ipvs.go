// Package fake holds map-backed IPVS and iptables for the director's unit
// tests; what they do is checked against the kernel in the micro-VM
// (TestIPVSReconcileMatchesKernel, TestGuardWithRealIPTables).
package fake

import (
	"net/netip"
	"sync"
	"syscall"

	"github.com/moby/ipvs"
)

// serviceKey is a virtual service as the kernel tells them apart: by
// firewall mark, or by protocol, address and port.
type serviceKey struct {
	fwmark   uint32
	protocol uint16
	addr     netip.Addr
	port     uint16
}

func keyOf(s *ipvs.Service) serviceKey {
	if s.FWMark != 0 {
		return serviceKey{fwmark: s.FWMark}
	}
	a, _ := netip.AddrFromSlice(s.Address)
	return serviceKey{protocol: s.Protocol, addr: a.Unmap(), port: s.Port}
}

// destKey is a destination of a service: its address and port.
type destKey struct {
	addr netip.Addr
	port uint16
}

func destKeyOf(d *ipvs.Destination) destKey {
	a, _ := netip.AddrFromSlice(d.Address)
	return destKey{a.Unmap(), d.Port}
}

// IPVS is a map-backed IPVS table (the interface director.IPVS), with
// the kernel's errors for duplicates and missing entries.
type IPVS struct {
	mu    sync.Mutex
	svcs  map[serviceKey]*ipvs.Service
	dests map[serviceKey]map[destKey]*ipvs.Destination
	// Calls counts mutating calls, so tests can see a no-op; Reads the
	// listings (each a netlink dump, on a real system).
	Calls, Reads int
}

// NewIPVS returns an empty table.
func NewIPVS() *IPVS {
	return &IPVS{svcs: map[serviceKey]*ipvs.Service{}, dests: map[serviceKey]map[destKey]*ipvs.Destination{}}
}

// GetServices implements director.IPVS.
func (f *IPVS) GetServices() ([]*ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	var out []*ipvs.Service
	for _, s := range f.svcs {
		c := *s
		out = append(out, &c)
	}
	return out, nil
}

// serviceOp answers as the kernel does when s's presence is not what the
// call needs (EEXIST, ESRCH), then stores a copy of s (a new one with no
// destinations), or deletes it with its destinations.
func (f *IPVS) serviceOp(s *ipvs.Service, mustExist, del bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	k := keyOf(s)
	switch {
	case mustExist && f.svcs[k] == nil:
		return syscall.ESRCH
	case !mustExist && f.svcs[k] != nil:
		return syscall.EEXIST
	case del:
		delete(f.svcs, k)
		delete(f.dests, k)
	case !mustExist:
		c := *s
		f.svcs[k], f.dests[k] = &c, map[destKey]*ipvs.Destination{}
	default:
		c := *s
		f.svcs[k] = &c
	}
	return nil
}

// NewService implements director.IPVS.
func (f *IPVS) NewService(s *ipvs.Service) error { return f.serviceOp(s, false, false) }

// UpdateService implements director.IPVS.
func (f *IPVS) UpdateService(s *ipvs.Service) error { return f.serviceOp(s, true, false) }

// DelService implements director.IPVS.
func (f *IPVS) DelService(s *ipvs.Service) error { return f.serviceOp(s, true, true) }

// GetDestinations implements director.IPVS.
func (f *IPVS) GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	ds, ok := f.dests[keyOf(s)]
	if !ok {
		return nil, syscall.ESRCH
	}
	var out []*ipvs.Destination
	for _, d := range ds {
		c := *d
		out = append(out, &c)
	}
	return out, nil
}

// destOp answers as the kernel does when d's presence in s is not what
// the call needs (EEXIST, ENOENT), then stores a copy of d, or deletes it.
func (f *IPVS) destOp(s *ipvs.Service, d *ipvs.Destination, mustExist, del bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	ds, ok := f.dests[keyOf(s)]
	if !ok {
		return syscall.ESRCH
	}
	k := destKeyOf(d)
	switch {
	case mustExist && ds[k] == nil:
		return syscall.ENOENT
	case !mustExist && ds[k] != nil:
		return syscall.EEXIST
	case del:
		delete(ds, k)
	default:
		c := *d
		ds[k] = &c
	}
	return nil
}

// NewDestination implements director.IPVS.
func (f *IPVS) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return f.destOp(s, d, false, false)
}

// UpdateDestination implements director.IPVS.
func (f *IPVS) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return f.destOp(s, d, true, false)
}

// DelDestination implements director.IPVS.
func (f *IPVS) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return f.destOp(s, d, true, true)
}
