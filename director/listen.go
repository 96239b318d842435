package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// IPv4Packet is the part of an IPv4 header VRRP checks, and the payload.
type IPv4Packet struct {
	Src, Dst netip.Addr
	TTL      uint8
	Protocol uint8
	Payload  []byte
}

// ParseIPv4 reads an IPv4 packet as an AF_PACKET SOCK_DGRAM socket
// delivers it (from the IP header on).
func ParseIPv4(b []byte) (IPv4Packet, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return IPv4Packet{}, errors.New("not an IPv4 packet")
	}
	ihl, total := int(b[0]&0x0f)*4, int(b[2])<<8|int(b[3])
	if ihl < 20 || total < ihl || total > len(b) {
		return IPv4Packet{}, fmt.Errorf("bad IPv4 lengths: header %d, total %d, have %d", ihl, total, len(b))
	}
	return IPv4Packet{Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20])),
		TTL: b[8], Protocol: b[9], Payload: b[ihl:total]}, nil
}

// PacketConn is an AF_PACKET socket on Go's poller, so Close ends a Recv:
// the daemon's advert receiver and the scenarios' bridge capture.
type PacketConn struct {
	f  *os.File
	rc syscall.RawConn
}

// ListenPacket opens an AF_PACKET socket of type typ (unix.SOCK_RAW:
// frames from the Ethernet header; unix.SOCK_DGRAM: from the network
// header) for ethertype proto (unix.ETH_P_ALL for every frame), in the
// network namespace of the calling thread; it is bound to no interface.
func ListenPacket(typ int, proto uint16, name string) (*PacketConn, error) {
	fd, err := unix.Socket(unix.AF_PACKET, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return nil, fmt.Errorf("packet socket %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &PacketConn{f, rc}, nil
}

// Control runs fn on the socket's descriptor: a filter, a bind.
func (c *PacketConn) Control(fn func(fd int) error) error {
	var err error
	if cerr := c.rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// Recv reads the next frame another host sent into buf, skipping those
// this host sent. It returns the frame's length on the wire (MSG_TRUNC:
// more than len(buf) when cut) and the link-layer source.
func (c *PacketConn) Recv(buf []byte) (int, *unix.SockaddrLinklayer, error) {
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return 0, nil, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype != unix.PACKET_OUTGOING {
			return n, ll, nil
		}
	}
}

// Close closes the socket, ending a Recv.
func (c *PacketConn) Close() error { return c.f.Close() }

// listenAdverts opens a packet socket on ifi whose kernel filter passes
// IPv4 protocol 112 only: the raw IP socket the daemon sends on cannot
// tell the sender's MAC, and the fwmark guard learns the peer's MAC from
// its adverts.
func listenAdverts(ifi *net.Interface) (*PacketConn, error) {
	c, err := ListenPacket(unix.SOCK_DGRAM, unix.ETH_P_IP, "vrrp-"+ifi.Name)
	if err != nil {
		return nil, err
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1}, // IPv4 protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: VRRPProto, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err == nil {
		err = c.Control(func(fd int) error {
			err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
				&unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))})
			if err != nil {
				return err
			}
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
		})
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("vrrp packet socket on %s: %w", ifi.Name, err)
	}
	return c, nil
}

// readAdvert returns the next VRRP packet another host sent on c, with
// its source MAC.
func readAdvert(c *PacketConn, buf []byte) (IPv4Packet, net.HardwareAddr, error) {
	for {
		n, ll, err := c.Recv(buf)
		if err != nil {
			return IPv4Packet{}, nil, err
		}
		if p, err := ParseIPv4(buf[:min(n, len(buf))]); err == nil {
			return p, net.HardwareAddr(append([]byte(nil), ll.Addr[:ll.Halen]...)), nil
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
