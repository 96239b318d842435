// Package afpacket is an AF_PACKET socket on Go's poller: frames with
// their link-layer source, frames this host sent skipped. The director
// receives VRRP adverts on it (the sender's MAC teaches the guard) and the
// scenarios capture a lab's bridge.
//
// Not github.com/mdlayher/packet, which binds every socket to one
// interface and reads neither the packet type nor PACKET_AUXDATA: the
// capture listens on every port of a bridge at once, both users skip
// the frames this host sent (PACKET_OUTGOING), and a frame a filter cut
// keeps its length on the wire.
package afpacket

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Conn is an AF_PACKET socket on Go's poller, so Close ends a Recv:
// the director's advert receiver and the scenarios' bridge capture.
type Conn struct {
	f   *os.File
	rc  syscall.RawConn
	oob []byte // Recv's control messages; Recv is not for concurrent use
}

// Listen opens an AF_PACKET socket of type typ (unix.SOCK_RAW:
// frames from the Ethernet header; unix.SOCK_DGRAM: from the network
// header) for ethertype proto (unix.ETH_P_ALL for every frame), in the
// network namespace of the calling thread; it is bound to no interface.
func Listen(typ int, proto uint16, name string) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_PACKET, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(Htons(proto)))
	if err != nil {
		return nil, fmt.Errorf("packet socket %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Conn{f: f, rc: rc, oob: make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{}))))}, nil
}

// Control runs fn on the socket's descriptor: a filter, a bind.
func (c *Conn) Control(fn func(fd int) error) error {
	var err error
	if cerr := c.rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// SetBPF attaches a classic BPF socket filter: the kernel drops what it
// rejects and cuts what it passes to the length it returns.
func (c *Conn) SetBPF(prog []bpf.Instruction) error {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return err
	}
	return c.Control(func(fd int) error {
		return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(raw)), Filter: (*unix.SockFilter)(unsafe.Pointer(&raw[0]))})
	})
}

// SetReadBuffer sets the socket's receive buffer to bytes, above
// net.core.rmem_max where the caller may (SO_RCVBUFFORCE, root).
func (c *Conn) SetReadBuffer(bytes int) error {
	return c.Control(func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes); err == nil {
			return nil
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bytes)
	})
}

// Stats returns the kernel's counts since the last call (PACKET_STATISTICS
// resets them): frames that passed the filter, and those dropped for want
// of buffer room.
func (c *Conn) Stats() (packets, drops uint32, err error) {
	err = c.Control(func(fd int) error {
		st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err == nil {
			packets, drops = st.Packets, st.Drops
		}
		return err
	})
	return packets, drops, err
}

// Recv reads the next frame another host sent into buf, skipping those
// this host sent. It returns the frame's length on the wire (more than
// len(buf) when cut, also by a filter: the kernel's PACKET_AUXDATA says the
// length before any cut) and the link-layer source.
func (c *Conn) Recv(buf []byte) (int, *unix.SockaddrLinklayer, error) {
	oob := c.oob
	for {
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return 0, nil, err
		}
		if wire, ok := auxLen(oob[:oobn]); ok {
			n = wire
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype != unix.PACKET_OUTGOING {
			return n, ll, nil
		}
	}
}

// WantAuxData asks the kernel for each frame's PACKET_AUXDATA, so Recv
// returns lengths on the wire even when a filter cuts frames.
func (c *Conn) WantAuxData() error {
	return c.Control(func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1) })
}

// auxLen is the frame's length on the wire from its PACKET_AUXDATA.
func auxLen(oob []byte) (int, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
			return int(aux.Len), true
		}
	}
	return 0, false
}

// Close closes the socket, ending a Recv.
func (c *Conn) Close() error { return c.f.Close() }

// Htons is a 16-bit value in network byte order, as AF_PACKET wants
// ethertypes.
func Htons(v uint16) uint16 { return v<<8 | v>>8 }
