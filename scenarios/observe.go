package scenarios

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/lvslab/lvslab/lab"
	"github.com/moby/ipvs"
)

// IPVSCounters sums the kernel's counters over a director's virtual
// services.
type IPVSCounters struct {
	Services int    `json:"services"`
	Conns    uint32 `json:"conns"`
	InPkts   uint32 `json:"in_pkts"`
}

// ReadIPVS reads a box's IPVS services and stats through moby/ipvs, bound
// to the box's namespace.
func ReadIPVS(box *lab.Box) (IPVSCounters, error) {
	var c IPVSCounters
	h, err := ipvs.New(box.Path())
	if err != nil {
		return c, fmt.Errorf("ipvs in %s: %w", box.Name, err)
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		return c, fmt.Errorf("ipvs services in %s: %w", box.Name, err)
	}
	c.Services = len(svcs)
	for _, s := range svcs {
		c.Conns += s.Stats.Connections
		c.InPkts += s.Stats.PacketsIn
	}
	return c, nil
}

// Sub returns c - before.
func (c IPVSCounters) Sub(before IPVSCounters) IPVSCounters {
	return IPVSCounters{Services: c.Services, Conns: c.Conns - before.Conns, InPkts: c.InPkts - before.InPkts}
}

// PortFrames counts frames on a bridge port, seen from the bridge: Rx came
// from the node, Tx went to it.
type PortFrames struct {
	Rx uint64 `json:"rx"`
	Tx uint64 `json:"tx"`
}

// ReadPorts reads the frame counters of every port of the bridge box.
func ReadPorts(bridge *lab.Box) (map[string]PortFrames, error) {
	links, err := bridge.Netlink().LinkList()
	if err != nil {
		return nil, fmt.Errorf("links of %s: %w", bridge.Name, err)
	}
	out := map[string]PortFrames{}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == 0 || a.Statistics == nil {
			continue
		}
		out[a.Alias] = PortFrames{Rx: a.Statistics.RxPackets, Tx: a.Statistics.TxPackets}
	}
	return out, nil
}

// TimeExceeded reads Icmp OutTimeExcds of the box: ICMP time exceeded
// messages it sent, which current kernels send when a looping DR packet's
// TTL runs out. /proc/net is the process's namespace, so the per-thread
// view is read from inside the box.
func TimeExceeded(box *lab.Box) (uint64, error) {
	var v uint64
	err := box.Do(func() error {
		f, err := os.Open("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		defer f.Close()
		var names []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 || fields[0] != "Icmp:" {
				continue
			}
			if names == nil {
				names = fields
				continue
			}
			for i, n := range names {
				if n == "OutTimeExcds" && i < len(fields) {
					v, err = strconv.ParseUint(fields[i], 10, 64)
					return err
				}
			}
		}
		return fmt.Errorf("no Icmp OutTimeExcds in /proc/net/snmp")
	})
	return v, err
}
