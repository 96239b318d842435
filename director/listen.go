package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
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

// advertListener receives VRRP packets on one interface with the sender's
// MAC: the raw IP socket the daemon sends on cannot tell the MAC, and the
// fwmark guard learns the peer's MAC from its adverts.
type advertListener struct {
	f *os.File // the AF_PACKET socket, on Go's poller so Close ends a Read
}

// listenAdverts opens an AF_PACKET socket bound to ifi whose kernel filter
// passes IPv4 protocol 112 only.
func listenAdverts(ifi *net.Interface) (*advertListener, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
	if err != nil {
		return nil, fmt.Errorf("vrrp packet socket: %w", err)
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1}, // IPv4 protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: VRRPProto, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err == nil {
		err = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))})
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vrrp packet socket on %s: %w", ifi.Name, err)
	}
	return &advertListener{f: os.NewFile(uintptr(fd), "vrrp-"+ifi.Name)}, nil
}

// Read returns the next VRRP packet another host sent, with its source MAC.
func (l *advertListener) Read(buf []byte) (IPv4Packet, net.HardwareAddr, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return IPv4Packet{}, nil, err
	}
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return IPv4Packet{}, nil, err
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue // our own adverts
		}
		p, err := ParseIPv4(buf[:n])
		if err != nil {
			continue
		}
		return p, net.HardwareAddr(append([]byte(nil), ll.Addr[:ll.Halen]...)), nil
	}
}

// Close ends a blocked Read.
func (l *advertListener) Close() error { return l.f.Close() }
