package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/lvslab/lvslab/lab/afpacket"

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

// parseIPv4 reads an IPv4 packet as an AF_PACKET SOCK_DGRAM socket
// delivers it (from the IP header on).
func parseIPv4(b []byte) (IPv4Packet, error) {
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

// listenAdverts opens a packet socket on ifi whose kernel filter passes
// IPv4 protocol 112 only: the raw IP socket the daemon sends on cannot
// tell the sender's MAC, and the fwmark guard learns the peer's MAC from
// its adverts.
func listenAdverts(ifi *net.Interface) (*afpacket.Conn, error) {
	c, err := afpacket.Listen(unix.SOCK_DGRAM, unix.ETH_P_IP, "vrrp-"+ifi.Name)
	if err != nil {
		return nil, err
	}
	err = c.SetBPF([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1}, // IPv4 protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: VRRPProto, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err == nil {
		err = c.Control(func(fd int) error {
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: afpacket.Htons(unix.ETH_P_IP), Ifindex: ifi.Index})
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
func readAdvert(c *afpacket.Conn, buf []byte) (IPv4Packet, net.HardwareAddr, error) {
	for {
		n, ll, err := c.Recv(buf)
		if err != nil {
			return IPv4Packet{}, nil, err
		}
		if p, err := parseIPv4(buf[:min(n, len(buf))]); err == nil {
			return p, net.HardwareAddr(append([]byte(nil), ll.Addr[:ll.Halen]...)), nil
		}
	}
}
