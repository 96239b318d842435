package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/lvslab/lvslab/lab/afpacket"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func (d *Daemon) vipAddr(v netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: v.AsSlice(), Mask: net.CIDRMask(d.addr.Bits(), 32)}}
}

// addVIPs puts the VIPs on the interface and announces them with
// gratuitous ARP (in the background: 200 ms of pauses), so the client and
// switch learn our MAC at once. The announcements stop when the VIPs go:
// a MASTER that yields at once must not go on claiming the VIP for the
// peer that now holds it.
func (d *Daemon) addVIPs() error {
	held := d.heldWhile(d.vipGen.Add(1))
	d.announced = time.Now()
	var errs []error
	for _, v := range d.vips {
		if err := d.nl.AddrAdd(d.link, d.vipAddr(v)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add VIP %s on %s: %w", v, d.ifi.Name, err))
			continue
		}
		d.announce(v, held)
	}
	return errors.Join(errs...)
}

// refreshVIPs announces the VIPs again when vrrp.garp_refresh has passed
// since the last announcement and we are MASTER. The loop calls it on
// its timer, which while MASTER fires for every advert.
func (d *Daemon) refreshVIPs(now time.Time) {
	every := d.cfg.VRRP.GARPRefresh
	if every == 0 || d.fsm.State() != Master || now.Sub(d.announced) < every {
		return
	}
	d.announced = now
	held := d.heldWhile(d.vipGen.Load())
	for _, v := range d.vips {
		d.announce(v, held)
	}
}

// heldWhile is an announcement's test that the VIPs it announces are still
// held: no VIP addition or removal since generation gen.
func (d *Daemon) heldWhile(gen uint64) func() bool {
	return func() bool { return d.vipGen.Load() == gen }
}

func (d *Daemon) delVIPs() error {
	d.vipGen.Add(1) // ends the announcements under way
	var errs []error
	for _, v := range d.vips {
		if err := d.nl.AddrDel(d.link, d.vipAddr(v)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("delete VIP %s from %s: %w", v, d.ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

// garpFrame is an RFC 5227 announcement of addr from mac: a broadcast
// ARP request whose sender and target protocol address are both addr.
func garpFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	ip := addr.AsSlice()
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: mac, SourceProtAddress: ip, DstHwAddress: make([]byte, 6), DstProtAddress: ip}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp)
	return buf.Bytes(), err
}

// gratuitousARP broadcasts n ARP requests for addr from ifi's MAC (RFC
// 5227 announcements), one every 100 ms, each only while held says the
// address is still ours.
func gratuitousARP(ifi *net.Interface, addr netip.Addr, n int, held func() bool) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(afpacket.Htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("gratuitous ARP socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: afpacket.Htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], layers.EthernetBroadcast)
	frame, err := garpFrame(ifi.HardwareAddr, addr)
	if err != nil {
		return fmt.Errorf("gratuitous ARP for %s: %w", addr, err)
	}
	for i := range n {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if !held() {
			return nil
		}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("gratuitous ARP for %s on %s: %w", addr, ifi.Name, err)
		}
	}
	return nil
}
