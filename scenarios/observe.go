package scenarios

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvslab/lvslab/director"
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

// readIPVS reads a box's IPVS services and stats through moby/ipvs, bound
// to the box's namespace.
func readIPVS(box *lab.Box) (IPVSCounters, error) {
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

// readPorts reads the frame counters of every port of the bridge box.
func readPorts(bridge *lab.Box) (map[string]PortFrames, error) {
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

// bridgeFrames sums the frames the bridge's ports carried, both ways: on
// the client's ports, and on the directors'.
func bridgeFrames(bridge *lab.Box, c Cluster, client string) (cl, dir uint64) {
	ports, _ := readPorts(bridge)
	for alias, f := range ports {
		node, _, _ := strings.Cut(alias, ".")
		switch {
		case node == client:
			cl += f.Rx + f.Tx
		case slices.ContainsFunc(c.Directors, func(d Director) bool { return d.Node == node }):
			dir += f.Rx + f.Tx
		}
	}
	return cl, dir
}

// Counters are a running lab's cumulative counters, what lvslab watch
// shows per second.
type Counters struct {
	ClientFrames, DirectorFrames uint64
	// IPVSPackets and TimeExceeded are each director's, in Cluster order.
	IPVSPackets  []uint32
	TimeExceeded []uint64
	// VIP names the directors holding the VIP on an interface.
	VIP []string
}

// ReadCounters reads l's counters now.
func ReadCounters(l *lab.Lab, c Cluster) (Counters, error) {
	var k Counters
	k.ClientFrames, k.DirectorFrames = bridgeFrames(l.Box(l.Topo.Bridges[0].Name), c, clientNode(l.Topo))
	for _, d := range c.Directors {
		box := l.Box(d.Node)
		ipvs, err := readIPVS(box)
		if err != nil {
			return k, err
		}
		te, err := TimeExceeded(box)
		if err != nil {
			return k, err
		}
		k.IPVSPackets, k.TimeExceeded = append(k.IPVSPackets, ipvs.InPkts), append(k.TimeExceeded, te)
		if HoldsVIP(box, c) == "" {
			k.VIP = append(k.VIP, d.Node)
		}
	}
	return k, nil
}

// sampleFrames reads the bridge's port counters every SampleInterval
// until stop is closed, and returns the per-interval frame counts.
func sampleFrames(bridge *lab.Box, c Cluster, client string, t0 time.Time, stop <-chan struct{}) []Sample {
	sum := func() (cl, dir uint64) { return bridgeFrames(bridge, c, client) }
	var out []Sample
	lastC, lastD := sum()
	tick := time.NewTicker(SampleInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return out
		case <-tick.C:
			cl, dir := sum()
			out = append(out, Sample{At: time.Since(t0), Client: cl - lastC, Directors: dir - lastD})
			lastC, lastD = cl, dir
		}
	}
}

// ipvsStatsDelay is one tick of the IPVS estimator, plus a margin.
const ipvsStatsDelay = 2200 * time.Millisecond

// snapshot is every observer's reading at one moment.
type snapshot struct {
	ipvs   map[string]IPVSCounters
	te     map[string]uint64
	frames map[string]PortFrames
}

func observe(l *lab.Lab, c Cluster) (snapshot, error) {
	s := snapshot{ipvs: map[string]IPVSCounters{}, te: map[string]uint64{}, frames: map[string]PortFrames{}}
	for _, d := range c.Directors {
		var err error
		if s.ipvs[d.Node], err = readIPVS(l.Box(d.Node)); err != nil {
			return s, err
		}
		if s.te[d.Node], err = TimeExceeded(l.Box(d.Node)); err != nil {
			return s, err
		}
	}
	for _, b := range l.Topo.Bridges {
		ports, err := readPorts(l.Box(b.Name))
		if err != nil {
			return s, err
		}
		for k, v := range ports {
			s.frames[k] = v
		}
	}
	return s, nil
}

// syncDaemons lists the IPVS sync daemons running on each director.
func syncDaemons(l *lab.Lab, c Cluster) (map[string][]director.SyncDaemon, error) {
	out := map[string][]director.SyncDaemon{}
	for _, d := range c.Directors {
		err := l.Box(d.Node).Do(func() (err error) {
			out[d.Node], err = director.SyncDaemons()
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("sync daemons in %s: %w", d.Node, err)
		}
	}
	return out, nil
}
