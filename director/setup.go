package director

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// setup readies the daemon, step by step: the link and addresses, IPVS,
// the guard, the table the config asks for, and the VRRP socket.
func (d *Daemon) setup() error {
	for _, step := range []func() error{d.setupLink, d.setupIPVS, d.setupGuard, d.reconcileAtStart, d.setupVRRP} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// setupLink finds the VRRP interface, the VIPs, and the box's own
// address on it.
func (d *Daemon) setupLink() error {
	cfg := d.cfg
	var err error
	if d.nl == nil {
		if d.nl, err = netlink.NewHandle(); err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
	}
	if d.link, err = d.nl.LinkByName(cfg.VRRP.Interface); err != nil {
		return fmt.Errorf("vrrp interface %s: %w", cfg.VRRP.Interface, err)
	}
	if d.ifi, err = net.InterfaceByName(cfg.VRRP.Interface); err != nil {
		return err
	}
	seen := map[netip.Addr]bool{}
	for _, s := range cfg.Services {
		if v := s.VIP.Addr; !seen[v] {
			seen[v] = true
			d.vips = append(d.vips, v)
		}
	}
	addrs, err := d.nl.AddrList(d.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", cfg.VRRP.Interface, err)
	}
	for _, a := range addrs {
		p, _ := netip.AddrFromSlice(a.IP)
		if !seen[p.Unmap()] {
			ones, _ := a.Mask.Size()
			d.addr = netip.PrefixFrom(p.Unmap(), ones)
			break
		}
	}
	if !d.addr.IsValid() {
		return fmt.Errorf("%s has no IPv4 address of its own", cfg.VRRP.Interface)
	}
	d.initState()
	return nil
}

// setupIPVS opens the kernel's IPVS. moby/ipvs opens a handle even where
// the kernel has no IPVS, and its calls then fail silently: ask for
// IPVS's netlink family first. Where ip_vs is a module not yet loaded,
// load it, as keepalived does.
func (d *Daemon) setupIPVS() error {
	if _, err := netlink.GenlFamilyGet("IPVS"); err != nil {
		out, merr := exec.Command("modprobe", "ip_vs").CombinedOutput()
		if _, err2 := netlink.GenlFamilyGet("IPVS"); err2 != nil {
			return fmt.Errorf("kernel IPVS is not available here (%v; modprobe ip_vs: %v %s): see lvslab kernel info", err, merr, bytes.TrimSpace(out))
		}
	}
	k, err := OpenKernel()
	if err != nil {
		return err
	}
	d.ipvs, d.closers = k, append(d.closers, k.Close)
	sh, err := ipvs.New("")
	if err != nil {
		return fmt.Errorf("ipvs: %w", err)
	}
	d.stats, d.closers = sh, append(d.closers, sh.Close)
	return nil
}

// setupGuard puts the configured loop guard in place.
func (d *Daemon) setupGuard() error {
	cfg := d.cfg
	var err error
	switch cfg.Guard.Mode {
	case GuardFwmark:
		if d.ipt, err = iptables.New(); err != nil {
			return fmt.Errorf("iptables: %w (install iptables)", err)
		}
		if cfg.Guard.PeerMAC.HardwareAddr != nil {
			d.peerMAC, d.peerFrom = cfg.Guard.PeerMAC.HardwareAddr, "config"
		} else {
			d.log.Info("guard learns the peer's MAC from its VRRP adverts")
		}
		return d.applyGuard(d.fsm.State(), d.peerMAC)
	case GuardBackupOnly:
		if d.backupOnly, err = os.ReadFile(backupOnlySysctl); err != nil {
			return fmt.Errorf("guard mode backup-only: %w", err)
		}
		if err := os.WriteFile(backupOnlySysctl, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("guard mode backup-only: %w", err)
		}
	case GuardNone:
		d.log.Warn("guard mode none: the BACKUP re-balances what the MASTER forwards (the ping-pong loop); use it only to reproduce the bug")
	}
	return nil
}

func (d *Daemon) reconcileAtStart() error {
	c, err := d.Reconcile()
	if err != nil {
		return err
	}
	d.log.Info("ipvs reconciled", "changes", fmt.Sprintf("%+v", c))
	return nil
}

// setupVRRP opens the advert socket (sending only: adverts are received
// by listenAdverts) and the gratuitous ARP announcer.
func (d *Daemon) setupVRRP() error {
	pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
	if err != nil {
		return fmt.Errorf("vrrp socket: %w", err)
	}
	d.conn = ipv4.NewPacketConn(pc)
	d.transmit = d.send
	d.announce = func(v netip.Addr, held func() bool) {
		d.spawn(func() {
			if err := gratuitousARP(d.ifi, v, 3, held); err != nil {
				d.log.Error("gratuitous ARP", "err", err)
			}
		})
	}
	d.dst = VRRPGroup
	if d.cfg.VRRP.UnicastPeer.IsValid() {
		d.dst = d.cfg.VRRP.UnicastPeer.Addr
	}
	if d.ads, err = listenAdverts(d.ifi); err != nil {
		return err
	}
	for _, f := range []func() error{
		func() error { return d.conn.SetBPF(dropAll) },
		func() error { return d.conn.JoinGroup(d.ifi, &net.IPAddr{IP: VRRPGroup.AsSlice()}) },
		func() error { return d.conn.SetMulticastInterface(d.ifi) },
		func() error { return d.conn.SetMulticastTTL(255) }, // RFC 5798 5.1.1.3
		func() error { return d.conn.SetMulticastLoopback(false) },
	} {
		if err := f(); err != nil {
			return fmt.Errorf("vrrp socket: %w", err)
		}
	}
	return nil
}

// initState sets up what the loop keeps: the state machine, and each
// realserver's health, all up.
func (d *Daemon) initState() {
	d.health, d.down, d.lastCheck = map[[2]int]*Health{}, map[[2]int]bool{}, map[[2]int]string{}
	for i, s := range d.cfg.Services {
		for j, r := range s.Realservers {
			d.health[[2]int{i, j}] = &Health{Rise: r.Check.Rise, Fall: r.Check.Fall}
		}
	}
	v := d.cfg.VRRP
	d.fsm = Machine{Priority: uint8(v.Priority), AdvertInt: v.AdvertInt, Preempt: *v.Preempt, PreemptDelay: v.PreemptDelay, Addr: d.addr.Addr()}
}

// teardown removes what setup and the loop installed: VIPs, IPVS
// services, guard, sync daemons; it logs what it removed, and nothing
// when setup failed before installing anything. The worker's queued jobs
// run first, so none installs anything afterwards.
func (d *Daemon) teardown() error {
	d.work.close()
	var errs []error
	var removed []string
	if d.conn != nil {
		d.conn.Close()
	}
	if d.ads != nil {
		d.ads.Close()
	}
	if d.started {
		errs = append(errs, d.delVIPs())
		removed = append(removed, "VIPs")
	}
	if d.ipvs != nil {
		if _, err := Reconcile(d.ipvs, d.cfg.Desired(), nil); err != nil {
			errs = append(errs, err)
		}
		removed = append(removed, "IPVS services")
	}
	for _, c := range d.closers {
		c()
	}
	if d.ipt != nil {
		errs = append(errs, removeGuard(d.ipt), redirectChain.remove(d.ipt))
		removed = append(removed, "guard")
	}
	if d.backupOnly != nil {
		for _, s := range []SyncState{SyncMaster, SyncBackup} {
			if err := stopSyncDaemon(s); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, os.WriteFile(backupOnlySysctl, d.backupOnly, 0o644))
		removed = append(removed, "sync daemons", "backup_only restored")
	}
	if len(removed) > 0 {
		d.log.Info("stopped: removed what it installed", "removed", strings.Join(removed, ", "))
	}
	return errors.Join(errs...)
}
