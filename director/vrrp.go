package director

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// VRRPv3 over IPv4 (RFC 5798): IP protocol 112 to 224.0.0.18, TTL 255.
const (
	VRRPProto   = 112
	vrrpVersion = 3
	vrrpAdvert  = 1
)

// VRRPGroup is the IPv4 multicast address adverts go to.
var VRRPGroup = netip.MustParseAddr("224.0.0.18")

// Advert is a VRRPv3 advertisement (RFC 5798 section 5.1).
type Advert struct {
	VRID     uint8
	Priority uint8
	// Interval is Max Advertise Interval, carried in centiseconds (12 bits).
	Interval time.Duration
	Addrs    []netip.Addr
}

// ErrBadAdvert is wrapped by every ParseAdvert error.
var ErrBadAdvert = errors.New("bad VRRP advertisement")

// Marshal encodes a as sent from src to dst; the checksum covers the IPv4
// pseudo-header (RFC 5798 section 5.2.8: unlike VRRPv2).
func (a Advert) Marshal(src, dst netip.Addr) []byte {
	b := make([]byte, 8+4*len(a.Addrs))
	b[0] = vrrpVersion<<4 | vrrpAdvert
	b[1], b[2], b[3] = a.VRID, a.Priority, uint8(len(a.Addrs))
	binary.BigEndian.PutUint16(b[4:], uint16(a.Interval/(10*time.Millisecond))&0x0fff)
	for i, ad := range a.Addrs {
		v4 := ad.As4()
		copy(b[8+4*i:], v4[:])
	}
	binary.BigEndian.PutUint16(b[6:], checksum(src, dst, b))
	return b
}

// parseAdvert decodes a VRRP message received from src for dst (the IP
// payload) and verifies version, type, length and checksum.
func parseAdvert(src, dst netip.Addr, b []byte) (Advert, error) {
	var a Advert
	if len(b) < 8 {
		return a, fmt.Errorf("%w: %d bytes", ErrBadAdvert, len(b))
	}
	if v, t := b[0]>>4, b[0]&0x0f; v != vrrpVersion || t != vrrpAdvert {
		return a, fmt.Errorf("%w: version %d type %d, want 3 and 1", ErrBadAdvert, v, t)
	}
	n := int(b[3])
	if len(b) < 8+4*n {
		return a, fmt.Errorf("%w: %d addresses in %d bytes", ErrBadAdvert, n, len(b))
	}
	b = b[:8+4*n]
	if c := checksum(src, dst, b); c != 0 {
		return a, fmt.Errorf("%w: checksum mismatch", ErrBadAdvert)
	}
	a.VRID, a.Priority = b[1], b[2]
	a.Interval = time.Duration(binary.BigEndian.Uint16(b[4:])&0x0fff) * 10 * time.Millisecond
	for i := range n {
		a.Addrs = append(a.Addrs, netip.AddrFrom4([4]byte(b[8+4*i:12+4*i])))
	}
	return a, nil
}

// checksum is the Internet checksum (RFC 1071) over the IPv4 pseudo-header
// and msg. Over a message with its checksum in place it is 0.
func checksum(src, dst netip.Addr, msg []byte) uint16 {
	s4, d4 := src.As4(), dst.As4()
	pseudo := make([]byte, 0, 12+len(msg))
	pseudo = append(pseudo, s4[:]...)
	pseudo = append(pseudo, d4[:]...)
	pseudo = append(pseudo, 0, VRRPProto)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(msg)))
	pseudo = append(pseudo, msg...)
	var sum uint32
	for i := 0; i+1 < len(pseudo); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	if len(pseudo)%2 == 1 {
		sum += uint32(pseudo[len(pseudo)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
