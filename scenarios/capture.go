package scenarios

import (
	"bytes"
	"encoding/binary"
	"github.com/lvslab/lvslab/director/afpacket"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lvslab/lvslab/lab"
	"golang.org/x/sys/unix"
)

// Frame is one captured Ethernet frame, cut to snapLen bytes.
type Frame struct {
	At   time.Time
	Len  int // on the wire
	Data []byte
}

const (
	snapLen   = 96 // Ethernet + IPv4 + TCP headers
	maxFrames = 200000
)

// Capture records every frame that enters the bridge from a port: an
// AF_PACKET socket in the bridge's namespace, bound to all its interfaces.
// A frame the bridge forwards is seen once, on the port it came in by.
type Capture struct {
	conn   *afpacket.Conn
	mu     sync.Mutex
	frames []Frame
	done   chan struct{}
}

// StartCapture opens the socket inside bridge and reads until Stop.
func StartCapture(bridge *lab.Box) (*Capture, error) {
	c := &Capture{done: make(chan struct{})}
	err := bridge.Do(func() (err error) {
		c.conn, err = afpacket.Listen(unix.SOCK_RAW, unix.ETH_P_ALL, "capture-"+bridge.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, snapLen)
		for {
			n, _, err := c.conn.Recv(buf)
			if err != nil {
				return // closed by Stop
			}
			c.mu.Lock()
			if len(c.frames) < maxFrames {
				c.frames = append(c.frames, Frame{At: time.Now(), Len: n, Data: append([]byte(nil), buf[:min(n, snapLen)]...)})
			}
			c.mu.Unlock()
		}
	}()
	return c, nil
}

// Stop ends the capture and returns the frames.
func (c *Capture) Stop() []Frame {
	c.conn.Close()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// WritePcap writes frames as a classic pcap file (Ethernet link type), as
// tcpdump -w does: tcpdump -r and Wireshark open it.
func WritePcap(w io.Writer, frames []Frame) error {
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], snapLen)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	rec := make([]byte, 16)
	for _, f := range frames {
		us := f.At.UnixMicro()
		binary.LittleEndian.PutUint32(rec[0:], uint32(us/1e6))
		binary.LittleEndian.PutUint32(rec[4:], uint32(us%1e6))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f.Data)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(f.Len))
		if _, err := w.Write(rec); err != nil {
			return err
		}
		if _, err := w.Write(f.Data); err != nil {
			return err
		}
	}
	return nil
}

// Bounces is what the capture says about the loop.
type Bounces struct {
	// Forwarded counts TCP segments to the VIP that a director sent on
	// (DR: the director's MAC as source, the client's IP header kept).
	Forwarded int `json:"forwarded"`
	// Bounced counts segments that directors sent on more than once with
	// a lower TTL each time: passed from one director to the other.
	Bounced int `json:"bounced"`
	// MaxDepth is the most director hops one segment made.
	MaxDepth int `json:"max_depth"`
}

// CountBounces finds segments to vip:port bouncing between directors: the
// same client 5-tuple, IP id and TCP sequence number sent by a director's
// MAC with decreasing TTLs (IPVS DR forwarding decrements the TTL on
// current kernels). A client's retransmission carries a fresh TTL, so it
// is not counted as a hop.
func CountBounces(frames []Frame, directors []net.HardwareAddr, vip netip.Addr, port uint16) Bounces {
	isDirector := func(mac []byte) bool {
		return slices.ContainsFunc(directors, func(d net.HardwareAddr) bool { return bytes.Equal(d, mac) })
	}
	type key struct {
		src   netip.AddrPort
		ipid  uint16
		seq   uint32
		flags byte
	}
	ttls := map[key]map[byte]bool{}
	var b Bounces
	for _, f := range frames {
		d := f.Data
		if len(d) < 14+20+14 || binary.BigEndian.Uint16(d[12:]) != 0x0800 || !isDirector(d[6:12]) {
			continue
		}
		ip := d[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != unix.IPPROTO_TCP || len(ip) < ihl+14 || netip.AddrFrom4([4]byte(ip[16:20])) != vip {
			continue
		}
		tcp := ip[ihl:]
		if binary.BigEndian.Uint16(tcp[2:]) != port {
			continue
		}
		k := key{netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(tcp[0:])),
			binary.BigEndian.Uint16(ip[4:]), binary.BigEndian.Uint32(tcp[4:]), tcp[13]}
		if ttls[k] == nil {
			ttls[k] = map[byte]bool{}
			b.Forwarded++
		}
		ttls[k][ip[8]] = true
	}
	for _, t := range ttls {
		if len(t) > 1 {
			b.Bounced++
		}
		b.MaxDepth = max(b.MaxDepth, len(t))
	}
	return b
}
