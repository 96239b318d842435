// Package afpacket is an AF_PACKET socket on Go's poller: frames with
// their link-layer source, frames this host sent skipped. The director
// receives VRRP adverts on it (the sender's MAC teaches the guard) and the
// scenarios capture a lab's bridge.
package afpacket

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Conn is an AF_PACKET socket on Go's poller, so Close ends a Recv:
// the director's advert receiver and the scenarios' bridge capture.
type Conn struct {
	f  *os.File
	rc syscall.RawConn
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
	return &Conn{f, rc}, nil
}

// Control runs fn on the socket's descriptor: a filter, a bind.
func (c *Conn) Control(fn func(fd int) error) error {
	var err error
	if cerr := c.rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// Recv reads the next frame another host sent into buf, skipping those
// this host sent. It returns the frame's length on the wire (MSG_TRUNC:
// more than len(buf) when cut) and the link-layer source.
func (c *Conn) Recv(buf []byte) (int, *unix.SockaddrLinklayer, error) {
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
func (c *Conn) Close() error { return c.f.Close() }

// Htons is a 16-bit value in network byte order, as AF_PACKET wants
// ethertypes.
func Htons(v uint16) uint16 { return v<<8 | v>>8 }
