package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netem is a link impairment as tc-netem applies it to the frames leaving
// an interface: delay with jitter, and loss, duplication and reordering in
// percent, and a rate limit. A topology declares it on an interface
// (both directions of the link); scenario events apply their own.
type Netem struct {
	Delay     string  `yaml:"delay,omitempty"`  // a Go duration: "100ms"
	Jitter    string  `yaml:"jitter,omitempty"` // likewise, with delay
	Loss      float64 `yaml:"loss,omitempty"`   // percent
	Duplicate float64 `yaml:"duplicate,omitempty"`
	Reorder   float64 `yaml:"reorder,omitempty"` // percent, with delay
	Rate      string  `yaml:"rate,omitempty"`    // "10mbit", "512kbit"
}

// attrs checks n and returns it as netlink's netem attributes; field
// names the first bad field.
func (n Netem) attrs() (a netlink.NetemQdiscAttrs, field string, err error) {
	dur := func(s string) (uint32, error) {
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 10*time.Second {
			return 0, fmt.Errorf("%q: want a duration from 0 to 10s", s)
		}
		return uint32(d.Microseconds()), nil
	}
	if a.Latency, err = dur(n.Delay); err != nil {
		return a, "delay", err
	}
	if a.Jitter, err = dur(n.Jitter); err != nil {
		return a, "jitter", err
	}
	if a.Jitter > a.Latency {
		return a, "jitter", fmt.Errorf("%s is more than the delay %q", n.Jitter, n.Delay)
	}
	for _, p := range []struct {
		name string
		v    float64
		to   *float32
	}{{"loss", n.Loss, &a.Loss}, {"duplicate", n.Duplicate, &a.Duplicate}, {"reorder", n.Reorder, &a.ReorderProb}} {
		if p.v < 0 || p.v > 100 {
			return a, p.name, fmt.Errorf("%g: want a percentage from 0 to 100", p.v)
		}
		*p.to = float32(p.v)
	}
	if a.ReorderProb > 0 && a.Latency == 0 {
		return a, "reorder", errors.New("reordering needs a delay (netem sends the reordered frames at once, the others later)")
	}
	if n.Rate != "" {
		if a.Rate64, err = parseRate(n.Rate); err != nil {
			return a, "rate", err
		}
	}
	return a, "", nil
}

// parseRate reads "10mbit", "512kbit", "1gbit" or "800bit" as bytes per
// second.
func parseRate(s string) (uint64, error) {
	for _, u := range []struct {
		suffix string
		bits   uint64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseUint(num, 10, 32)
			if err == nil && v > 0 {
				return v * u.bits / 8, nil
			}
			break
		}
	}
	return 0, fmt.Errorf("%q: want a rate such as 10mbit, 512kbit", s)
}

// Match picks the frames an impairment applies to; the zero Match is
// every frame.
type Match struct {
	Protocol uint8            // IP protocol, e.g. 112 (VRRP); 0: any
	SrcMAC   net.HardwareAddr // the frame's sender; nil: any
}

// keys are u32 selector keys for m, offsets from the network header: the
// IP protocol byte at 9, the source MAC 8 bytes before the header (its
// first four bytes) and 4 before (its last two, then the ethertype).
func (m Match) keys() []netlink.TcU32Key {
	var keys []netlink.TcU32Key
	if m.Protocol != 0 {
		keys = append(keys, netlink.TcU32Key{Off: 8, Mask: 0x00ff0000, Val: uint32(m.Protocol) << 16})
	}
	if len(m.SrcMAC) == 6 {
		keys = append(keys,
			netlink.TcU32Key{Off: -8, Mask: 0xffffffff, Val: binary.BigEndian.Uint32(m.SrcMAC[:4])},
			netlink.TcU32Key{Off: -4, Mask: 0xffff0000, Val: uint32(binary.BigEndian.Uint16(m.SrcMAC[4:])) << 16})
	}
	return keys
}

// Impair applies n to the frames of node's interface ifc that m matches,
// in one direction: toNode, the frames the bridge sends the node (its
// port's egress, in the bridge's namespace, so the sender's capture still
// sees them leave); else the frames the node sends. It returns the undo,
// which the lab also runs at Close. Only one impairment per direction of
// an interface at a time.
func (l *Lab) Impair(node, ifc string, toNode bool, m Match, n Netem) (undo func() error, err error) {
	a, field, err := n.attrs()
	if err != nil {
		return nil, fmt.Errorf("netem %s: %w", field, err)
	}
	box, dev, err := l.linkEnd(node, ifc, toNode)
	if err != nil {
		return nil, err
	}
	nl := box.Netlink()
	link, err := nl.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("impair %s.%s: %w", node, ifc, err)
	}
	idx := link.Attrs().Index
	root := netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_ROOT, Handle: netlink.MakeHandle(1, 0)}
	var once sync.Once
	remove := func() (err error) {
		once.Do(func() {
			err = nl.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: root, QdiscType: "noqueue"})
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
				err = nil // gone with its link
			}
		})
		return err
	}
	keys := m.keys()
	if len(keys) == 0 {
		err = nl.QdiscAdd(netlink.NewNetem(root, a))
	} else {
		// A prio qdisc whose band 1:1 delays or drops: every frame goes to
		// band 1:2 but those the u32 filter sends to 1:1.
		prio := netlink.NewPrio(root)
		for i := range prio.PriorityMap {
			prio.PriorityMap[i] = 1
		}
		err = nl.QdiscAdd(prio)
		if err == nil {
			err = nl.QdiscAdd(netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(1, 1), Handle: netlink.MakeHandle(10, 0)}, a))
		}
		if err == nil {
			proto := uint16(unix.ETH_P_ALL)
			if m.Protocol != 0 {
				proto = unix.ETH_P_IP
			}
			err = nl.FilterAdd(&netlink.U32{
				FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(1, 0), Priority: 1, Protocol: proto},
				ClassId:     netlink.MakeHandle(1, 1),
				Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: keys},
			})
		}
	}
	if err != nil {
		remove()
		return nil, fmt.Errorf("impair %s.%s (%s in %s): %w", node, ifc, dev, box.Name, err)
	}
	l.pushStep(undoStep{what: fmt.Sprintf("clear the impairment of %s in %s", dev, box.Name), fn: remove})
	return remove, nil
}

// linkEnd is the box and device of one end of node's interface ifc: the
// bridge's port (toNode) or the node's own.
func (l *Lab) linkEnd(node, ifc string, toNode bool) (*Box, string, error) {
	n := l.Topo.Node(node)
	if n == nil {
		return nil, "", fmt.Errorf("impair: no node %q", node)
	}
	i := n.iface(ifc)
	switch {
	case i == nil:
		return nil, "", fmt.Errorf("impair: node %s has no interface %q", node, ifc)
	case !toNode:
		return l.Box(node), ifc, nil
	case i.Bridge == "":
		return nil, "", fmt.Errorf("impair %s.%s toward the node: not a bridge port", node, ifc)
	}
	return l.Box(i.Bridge), portName(node, ifc, l.portIndex(n, i)), nil
}
