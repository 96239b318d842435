package director

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// applyGuard installs the guard rule for what is known now. With the
// peer's MAC: mark VIP traffic unless it comes from that MAC, in every
// state. Without it (learning, nothing found yet): a MASTER marks all VIP
// traffic, so it balances; anyone else marks nothing, so it serves what
// reaches it locally. A BACKUP hears the MASTER's adverts, so it knows the
// MASTER's MAC before it could re-balance; a MASTER finds its BACKUP's in
// the neighbour table after the first health check (lookForPeer), so a
// crash leaves no mark-all rule behind past the first seconds.
func (d *Daemon) applyGuard(state State, peer net.HardwareAddr) error {
	if d.ipt == nil {
		return nil
	}
	var g *Guard // nil: no rule
	if peer != nil || state == Master {
		s := d.cfg.Services[0]
		g = &Guard{VIP: s.VIP.Addr, Port: uint16(s.Port), Protocol: s.Protocol, PeerMAC: peer, Mark: d.cfg.Guard.Mark, Mask: d.cfg.Guard.Mask}
	}
	// Beside the guard, with the peer's MAC known: the peer REDIRECTs
	// (guard.redirect_peer), in every state, as the guard.
	var redirects [][]string
	if rp := d.cfg.Guard.RedirectPeer; g != nil && peer != nil && rp != nil && *rp {
		redirects = g.Redirects()
	}
	rule, redirect := "", []string(nil)
	if g != nil {
		rule = strings.Join(g.Rule(), " ")
	}
	for _, r := range redirects {
		redirect = append(redirect, strings.Join(r, " "))
	}
	// Checking costs several iptables execs (over a second on a loaded
	// VM), and every transition asks: rules this daemon put in force are
	// not checked again.
	// Only the worker (and setup, before it) writes the rules; the lock is
	// for status readers, which never wait on an exec.
	d.guardMu.Lock()
	inForce := d.guardSet && rule == d.guardRule && slices.Equal(redirect, d.guardRedirects)
	d.guardMu.Unlock()
	if inForce {
		return nil
	}
	var err error
	if g == nil {
		err = removeGuard(d.ipt)
	} else if changed, gerr := ensureGuard(d.ipt, *g); gerr != nil {
		err = gerr
	} else if changed {
		d.log.Info("guard installed", "rule", rule)
	}
	if err == nil && redirects == nil {
		err = redirectChain.remove(d.ipt)
	} else if err == nil {
		var changed bool
		if changed, err = redirectChain.ensure(d.ipt, redirects); changed {
			d.log.Info("peer redirect installed", "rules", redirect)
		}
	}
	d.guardMu.Lock()
	d.guardSet = err == nil
	if err == nil {
		d.guardRule, d.guardRedirects = rule, redirect
	}
	d.guardMu.Unlock()
	return err
}

// heard learns the peer's MAC from an advert, in fwmark mode without a
// configured peer_mac; a changed MAC re-installs the rule. Adverts are the
// authority: they replace a MAC found in the neighbour table. Only adverts
// from a possible peer count (unicast_peer, or a realserver that is not
// this box): VRRP adverts are unauthenticated, and any host on the segment
// could otherwise choose whose traffic this box re-balances.
func (d *Daemon) heard(r received) {
	switch {
	case d.ipt == nil || d.peerFrom == "config":
	case !slices.Contains(d.peers(), r.src):
		d.log.Debug("advert from a host that is no peer: its MAC is not learned", "src", r.src, "mac", r.mac.String())
	case bytes.Equal(r.mac, d.peerMAC):
		d.peerFrom = "adverts" // confirmed
	default:
		d.learnPeer(r.mac, "adverts", "peer", r.src)
	}
}

// peers are the addresses the other director may have: the unicast peer
// if configured, else every realserver that is not this box or a VIP.
func (d *Daemon) peers() []netip.Addr {
	if p := d.cfg.VRRP.UnicastPeer; p.IsValid() {
		return []netip.Addr{p.Addr}
	}
	var out []netip.Addr
	for _, s := range d.cfg.Services {
		for _, r := range s.Realservers {
			if a := r.Address.Addr; a != d.addr.Addr() && !slices.Contains(d.vips, a) && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// lookForPeer fills in the peer's MAC when adverts have not told it: a
// MASTER hears no adverts from its BACKUP. In the two-box layout the peer
// director is the one realserver that is not this box, and the health
// checks have made the kernel resolve its MAC: take it from the
// neighbour table. With more candidates it guesses nothing.
func (d *Daemon) lookForPeer() {
	if d.ipt == nil || d.peerMAC != nil {
		return
	}
	others := d.peers()
	if len(others) != 1 {
		return
	}
	neighs, err := d.nl.NeighList(d.ifi.Index, netlink.FAMILY_V4)
	if err != nil {
		return
	}
	for _, n := range neighs {
		usable := n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0
		if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == others[0] && usable && len(n.HardwareAddr) == 6 {
			d.learnPeer(n.HardwareAddr, "neighbour", "realserver", others[0])
			return
		}
	}
}

func (d *Daemon) learnPeer(mac net.HardwareAddr, from, role string, addr netip.Addr) {
	d.log.Info("peer MAC learned", "from", from, role, addr, "mac", mac.String(), "was", d.peerMAC.String())
	d.peerMAC, d.peerFrom = mac, from
	d.queueGuard()
}

// queueGuard has the worker put in force the guard rule for the state and
// peer MAC known now.
func (d *Daemon) queueGuard() {
	state, peer := d.fsm.State(), slices.Clone(d.peerMAC)
	d.work.do(func() {
		if err := d.applyGuard(state, peer); err != nil {
			d.log.Error("guard", "err", err)
		}
	})
}
