package scenarios

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/afpacket"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Frame is one captured Ethernet frame, cut to snapLen bytes.
type Frame struct {
	At   time.Time
	Len  int // on the wire
	Port int // ifindex of the bridge port it came in by
	Data []byte
}

const (
	snapLen   = 96 // Ethernet + IPv4 + TCP (or UDP) headers
	maxFrames = 200000
	// captureBuffer is the socket's receive buffer: 8 MiB holds some
	// 10,000 frames of a burst while the reader is descheduled.
	captureBuffer = 8 << 20
)

// CaptureStats says how complete a capture is: a bounce under-counted is
// a loop reported CLEAN.
type CaptureStats struct {
	Frames int `json:"frames"`
	// KernelDrops are frames the socket's buffer had no room for
	// (PACKET_STATISTICS).
	KernelDrops uint32 `json:"kernel_drops"`
	// Overflow are frames read past maxFrames and not kept.
	Overflow int `json:"overflow"`
}

// Complete says whether every frame is in the capture; nil (a report from
// before captures were counted) is taken as complete.
func (s *CaptureStats) Complete() bool { return s == nil || s.KernelDrops == 0 && s.Overflow == 0 }

// Capture records every frame that enters the bridge from a port: an
// AF_PACKET socket in the bridge's namespace, bound to all its interfaces,
// its kernel filter cutting frames to snapLen. A frame the bridge forwards
// is seen once, on the port it came in by.
type Capture struct {
	conn   *afpacket.Conn
	ports  map[int]string // ifindex -> name, in the bridge's namespace
	mu     sync.Mutex
	frames []Frame
	stats  CaptureStats
	done   chan struct{}
}

// startCapture opens the socket inside bridge and reads until Stop.
func startCapture(bridge *lab.Box) (*Capture, error) {
	c := &Capture{done: make(chan struct{}), ports: map[int]string{}}
	links, err := bridge.Netlink().LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		c.ports[l.Attrs().Index] = l.Attrs().Name
	}
	err = bridge.Do(func() (err error) {
		c.conn, err = afpacket.Listen(unix.SOCK_RAW, unix.ETH_P_ALL, "capture-"+bridge.Name)
		return err
	})
	if err == nil {
		err = c.conn.WantAuxData() // lengths on the wire, past the cut
	}
	if err == nil {
		err = c.conn.SetBPF([]bpf.Instruction{bpf.RetConstant{Val: snapLen}})
	}
	if err == nil {
		err = c.conn.SetReadBuffer(captureBuffer)
	}
	if err != nil {
		if c.conn != nil {
			c.conn.Close()
		}
		return nil, err
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, snapLen)
		for {
			n, ll, err := c.conn.Recv(buf)
			if err != nil {
				return // closed by Stop
			}
			c.mu.Lock()
			if len(c.frames) < maxFrames {
				c.frames = append(c.frames, Frame{At: time.Now(), Len: n, Port: ll.Ifindex, Data: append([]byte(nil), buf[:min(n, snapLen)]...)})
			} else {
				c.stats.Overflow++
			}
			c.mu.Unlock()
		}
	}()
	return c, nil
}

// Stop ends the capture and returns the frames and how complete they are.
func (c *Capture) Stop() ([]Frame, CaptureStats) {
	_, drops, err := c.conn.Stats()
	c.conn.Close()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Frames, c.stats.KernelDrops = len(c.frames), drops
	if err != nil {
		c.stats.KernelDrops = ^uint32(0) // unknown: count it as incomplete
	}
	return c.frames, c.stats
}

// writePcapng writes frames as pcapng with one interface per bridge port
// (ports: ifindex -> name), so Wireshark shows where each frame came in.
func writePcapng(w io.Writer, frames []Frame, ports map[int]string) error {
	var ifindexes []int
	for _, f := range frames {
		if !slices.Contains(ifindexes, f.Port) {
			ifindexes = append(ifindexes, f.Port)
		}
	}
	slices.Sort(ifindexes)
	iface := func(ifindex int) pcapgo.NgInterface {
		name := ports[ifindex]
		if name == "" {
			name = fmt.Sprintf("ifindex %d", ifindex)
		}
		return pcapgo.NgInterface{Name: name, LinkType: layers.LinkTypeEthernet, SnapLength: snapLen, TimestampResolution: 6}
	}
	if len(ifindexes) == 0 {
		ifindexes = []int{0}
	}
	ng, err := pcapgo.NewNgWriterInterface(w, iface(ifindexes[0]), pcapgo.DefaultNgWriterOptions)
	if err != nil {
		return err
	}
	id := map[int]int{ifindexes[0]: 0}
	for _, x := range ifindexes[1:] {
		if id[x], err = ng.AddInterface(iface(x)); err != nil {
			return err
		}
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: f.At, CaptureLength: len(f.Data), Length: f.Len, InterfaceIndex: id[f.Port]}
		if err := ng.WritePacket(ci, f.Data); err != nil {
			return err
		}
	}
	return ng.Flush()
}

// Bounces is what the capture says about the loop.
type Bounces struct {
	// Forwarded counts TCP segments to the VIP that a director sent on
	// (DR: the director's MAC as source, the client's IP header kept).
	Forwarded int `json:"forwarded"`
	// Bounced counts segments that directors sent on more than once with
	// a lower TTL each time: passed from one director to the other.
	Bounced int `json:"bounced"`
	// MaxDepth is the most director hops one tcpSegment made.
	MaxDepth int `json:"max_depth"`
}

// countBounces finds segments to vip:port bouncing between directors: the
// same client 5-tuple, IP id and TCP sequence number sent by a director's
// MAC with decreasing TTLs (IPVS DR forwarding decrements the TTL on
// current kernels). A client's retransmission carries a fresh TTL, so it
// is not counted as a hop.
func countBounces(frames []Frame, directors []net.HardwareAddr, vip netip.Addr, port uint16) Bounces {
	type key struct {
		src   netip.AddrPort
		ipid  uint16
		seq   uint32
		flags byte
	}
	ttls := map[key]map[byte]bool{}
	var b Bounces
	for _, f := range frames {
		s, ok := segmentTo(f, vip, port)
		if !ok || !isOneOf(directors, s.srcMAC) {
			continue
		}
		k := key{s.src, s.ipid, s.seq, s.flags}
		if ttls[k] == nil {
			ttls[k] = map[byte]bool{}
			b.Forwarded++
		}
		ttls[k][s.ttl] = true
	}
	for _, t := range ttls {
		if len(t) > 1 {
			b.Bounced++
		}
		b.MaxDepth = max(b.MaxDepth, len(t))
	}
	return b
}

// FromClients counts the TCP segments to vip:port that reached box (its
// MAC) from anyone but a director: what box's IPVS may count without
// having re-balanced anything another director forwarded.
func FromClients(frames []Frame, box net.HardwareAddr, directors []net.HardwareAddr, vip netip.Addr, port uint16) uint64 {
	var n uint64
	for _, f := range frames {
		if s, ok := segmentTo(f, vip, port); ok && bytes.Equal(s.dstMAC, box) && !isOneOf(directors, s.srcMAC) {
			n++
		}
	}
	return n
}

func isOneOf(macs []net.HardwareAddr, mac []byte) bool {
	return slices.ContainsFunc(macs, func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) })
}

// tcpSegment is what the judges read of a TCP tcpSegment in an Ethernet frame.
type tcpSegment struct {
	srcMAC, dstMAC []byte
	src            netip.AddrPort
	ipid           uint16
	ttl            byte
	seq            uint32
	flags          byte
}

// segmentTo parses f as an IPv4 TCP segment, or UDP datagram, to
// vip:port (a datagram has no sequence number nor flags: its IP id tells
// it apart).
func segmentTo(f Frame, vip netip.Addr, port uint16) (tcpSegment, bool) {
	d := f.Data
	if len(d) < 14+20+8 || binary.BigEndian.Uint16(d[12:]) != 0x0800 {
		return tcpSegment{}, false
	}
	ip := d[14:]
	ihl := int(ip[0]&0x0f) * 4
	header := map[byte]int{unix.IPPROTO_TCP: 14, unix.IPPROTO_UDP: 8}[ip[9]] // the bytes read below
	if header == 0 || len(ip) < ihl+header || netip.AddrFrom4([4]byte(ip[16:20])) != vip {
		return tcpSegment{}, false
	}
	l4 := ip[ihl:]
	if binary.BigEndian.Uint16(l4[2:]) != port {
		return tcpSegment{}, false
	}
	s := tcpSegment{srcMAC: d[6:12], dstMAC: d[0:6],
		src:  netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(l4[0:])),
		ipid: binary.BigEndian.Uint16(ip[4:]), ttl: ip[8]}
	if ip[9] == unix.IPPROTO_TCP {
		s.seq, s.flags = binary.BigEndian.Uint32(l4[4:]), l4[13]
	}
	return s, true
}
