// Package diagnose is `lvslab diagnose`: findings on the bundles that
// `lvslab collect` made on each director box, in well under a second,
// each with the file:line or the live numbers it rests on.
//
// A finding that means a loop is one of two: the loop seen live (a box
// that held no VIP over the window while its IPVS counted packets for the
// VIP's services: it re-balanced what the MASTER forwarded), or the loop
// by the configs (each of two boxes sends to the other, and each takes
// what the other forwards again: a service by address, or a mark rule
// that does not exclude the other box's MAC).
package diagnose

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/scenarios/check"
	"github.com/lvslab/lvslab/scenarios/collect"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// Box is one bundle, read.
type Box struct {
	Name   string
	Bundle *collect.Bundle
	Config *keepalivedconf.Config
	Rules  *check.Rules // nil: the bundle has no iptables-save
	// ConfigPath and RulesPath are the unpacked copies of the config and
	// of iptables-save's output ("" for none): lvslab check reads them.
	ConfigPath, RulesPath string
	files                 string // where the bundle's files/ were unpacked
}

// Finding is one thing diagnose says about a box.
type Finding struct {
	Box   string `json:"box"`
	Where string `json:"where"` // file:line on the box, "live", a sysctl
	What  string `json:"what"`
	Loop  bool   `json:"loop"` // it means a loop
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s: %s", f.Box, f.Where, f.What) }

// Load reads each bundle (a .tar.gz or its directory), unpacking its files
// under tmp. A box is named after its bundle's file (d1.tar.gz: d1).
func Load(paths []string, tmp string) ([]*Box, error) {
	var boxes []*Box
	for i, p := range paths {
		b, err := collect.Read(p)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(filepath.Clean(p)), ".tar.gz"), ".tgz")
		dir := filepath.Join(tmp, strconv.Itoa(i))
		cfgPath, err := b.Unpack(dir)
		if err != nil {
			return nil, fmt.Errorf("unpack %s: %w", p, err)
		}
		box := &Box{Name: name, Bundle: b, ConfigPath: cfgPath, files: filepath.Join(dir, "files")}
		if box.Config, err = keepalivedconf.Load(cfgPath); err != nil {
			return nil, fmt.Errorf("%s: %s", p, box.onBox(err.Error()))
		}
		if text, ok := b.File("iptables.rules"); ok {
			if box.Rules, err = check.ParseRules("iptables.rules", text); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			box.RulesPath = filepath.Join(dir, "iptables.rules")
		}
		boxes = append(boxes, box)
	}
	return boxes, nil
}

// onBox turns the unpacked copy's paths in s into the box's own.
func (b *Box) onBox(s string) string { return strings.ReplaceAll(s, b.files, "") }

func (b *Box) at(p keepalivedconf.Pos) string { return b.onBox(p.String()) }

// Diagnose gives every finding on boxes, box by box.
func Diagnose(boxes []*Box) []Finding {
	var out []Finding
	for _, b := range boxes {
		out = append(out, b.live()...)
		out = append(out, b.localAndRoute()...)
		out = append(out, b.unusedMarks()...)
		out = append(out, b.syncWithoutInstance()...)
		out = append(out, b.arp()...)
		out = append(out, b.strictAndProtocol()...)
		for _, o := range boxes {
			if o != b {
				out = append(out, b.unguarded(o)...)
				out = append(out, b.crashHole(o)...)
			}
		}
	}
	out = append(out, loopsByConfig(boxes)...)
	out = append(out, differingRealservers(boxes)...)
	return out
}

// Loops reports whether any finding means a loop.
func Loops(fs []Finding) bool { return slices.ContainsFunc(fs, func(f Finding) bool { return f.Loop }) }

// addrs are the box's own addresses: every address not lo's and not a VIP.
func (b *Box) addrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range b.Bundle.Addrs {
		p, err := netip.ParsePrefix(a.Prefix)
		if err != nil || a.Link == "lo" || slices.Contains(b.Bundle.Live.VIPs, p.Addr().String()) {
			continue
		}
		out = append(out, p.Addr())
	}
	return out
}

// Own is the box's own address and MAC, as lvslab check wants them: the
// first address of its VRRP interface that is not a VIP, and that
// interface's MAC.
func (b *Box) Own() (netip.Addr, string) {
	iface := b.vrrpIface()
	var own netip.Addr
	for _, a := range b.Bundle.Addrs {
		p, err := netip.ParsePrefix(a.Prefix)
		if err == nil && a.Link == iface && !slices.Contains(b.Bundle.Live.VIPs, p.Addr().String()) {
			own = p.Addr()
			break
		}
	}
	if !own.IsValid() && len(b.addrs()) > 0 {
		own = b.addrs()[0]
	}
	return own, b.mac()
}

// Scripts are the scripts the bundle holds, by their path on the box.
func (b *Box) Scripts() map[string][]byte {
	out := map[string][]byte{}
	for _, it := range b.Bundle.Items {
		if strings.HasPrefix(it.Name, "files/") && it.Source != b.Bundle.Config && !slices.Contains(b.Config.Files, filepath.Join(b.files, it.Source)) {
			if data, ok := b.Bundle.File(it.Name); ok {
				out[it.Source] = data
			}
		}
	}
	return out
}

// vrrpIface is the interface of the box's first VRRP instance ("" for
// none): the one its forwarded packets leave by in the two-box shape.
func (b *Box) vrrpIface() string {
	if len(b.Config.Instances) == 0 {
		return ""
	}
	return b.Config.Instances[0].Interface
}

// mac is the MAC the box's forwarded packets carry: its VRRP interface's,
// else its first link's that has one.
func (b *Box) mac() string {
	for _, l := range b.Bundle.Links {
		if l.Name == b.vrrpIface() && l.MAC != "" {
			return l.MAC
		}
	}
	for _, l := range b.Bundle.Links {
		if l.Name != "lo" && l.MAC != "" {
			return l.MAC
		}
	}
	return ""
}

// live: the loop seen live, from the window's samples.
func (b *Box) live() []Finding {
	s := b.Bundle.Live.Samples
	if len(s) < 2 {
		return nil
	}
	first, last := s[0], s[len(s)-1]
	for _, x := range s {
		if len(x.Held) > 0 {
			return nil // it held a VIP for some of the window: it may balance
		}
	}
	var grew []string
	total := uint64(0)
	for _, key := range slices.Sorted(maps.Keys(last.InPkts)) {
		if d := last.InPkts[key] - first.InPkts[key]; last.InPkts[key] > first.InPkts[key] {
			grew = append(grew, fmt.Sprintf("%s +%d", key, d))
			total += d
		}
	}
	if len(grew) == 0 {
		return nil
	}
	return []Finding{{Box: b.Name, Where: "live", Loop: true, What: fmt.Sprintf(
		"this box re-balances traffic while BACKUP: the two-box loop, seen live: it held none of the VIPs %s over %.1f s, yet its IPVS counted %d packets in (%s)",
		strings.Join(b.Bundle.Live.VIPs, ", "), last.At.Sub(first.At).Seconds(), total, strings.Join(grew, ", "))}}
}

// localAndRoute explains a service that sends both to this box and to
// another by MAC: the seed's clue, one Local and one Route line in
// ipvsadm -Ln (older kernels show a realserver at the box's own address
// as Local; 6.1 shows it as Route, and delivers it locally all the same).
func (b *Box) localAndRoute() []Finding {
	var out []Finding
	for _, s := range b.Bundle.IPVS {
		var local, route []string
		for _, d := range s.Dests {
			ap, err := netip.ParseAddrPort(d.Addr)
			switch {
			case d.Forward == "Local" || err == nil && slices.Contains(b.addrs(), ap.Addr()):
				local = append(local, d.Addr)
			case d.Forward == "Route":
				route = append(route, d.Addr)
			}
		}
		if len(local) > 0 && len(route) > 0 {
			out = append(out, Finding{Box: b.Name, Where: "ipvs " + s.Key, What: fmt.Sprintf(
				"sends to %s (this box: served here) and to %s by direct routing (forwarded unchanged, by MAC, to a box whose own IPVS service for the VIP takes it again unless a guard or backup_only stops it)",
				strings.Join(local, ", "), strings.Join(route, ", "))})
		}
	}
	return out
}

// fwmarks are the marks the box's config declares services by.
func (b *Box) fwmarks() []uint32 {
	var out []uint32
	for _, vs := range b.Config.VirtualServers {
		if vs.Mark != 0 {
			out = append(out, vs.Mark)
		}
	}
	return out
}

// unusedMarks: rules that set a mark no virtual service is declared by.
func (b *Box) unusedMarks() []Finding {
	if b.Rules == nil {
		return nil
	}
	var out []Finding
	for _, m := range b.Rules.Marks {
		if !slices.Contains(b.fwmarks(), m.Mark) {
			out = append(out, Finding{Box: b.Name, Where: m.Pos.String(), What: fmt.Sprintf("sets mark %d, which no virtual_server of %s is declared by (fwmark %d): it steers nothing into IPVS", m.Mark, b.Bundle.Config, m.Mark)})
		}
	}
	return out
}

// syncWithoutInstance: a sync daemon that follows no VRRP instance.
func (b *Box) syncWithoutInstance() []Finding {
	sd := b.Config.Global.SyncDaemon
	if sd == nil || sd.Instance != "" {
		return nil
	}
	return []Finding{{Box: b.Name, Where: b.at(sd.Pos), What: "lvs_sync_daemon names no VRRP instance: keepalived runs both the master and the backup sync daemon from the start, whatever the state; under backup_only the MASTER then stops balancing too"}}
}

// arp: a box that holds a VIP on lo (as a realserver does) must not
// answer ARP for it on its interfaces: arp_ignore ≥ 1 and arp_announce 2
// (the kernel takes the larger of all's and the interface's).
func (b *Box) arp() []Finding {
	onLo := false
	for _, a := range b.Bundle.Addrs {
		p, err := netip.ParsePrefix(a.Prefix)
		if err == nil && a.Link == "lo" && slices.Contains(b.Bundle.Live.VIPs, p.Addr().String()) {
			onLo = true
		}
	}
	if !onLo {
		return nil
	}
	var out []Finding
	sysctl := func(iface, key string) int {
		n, _ := strconv.Atoi(b.Bundle.Sysctls["net.ipv4.conf."+iface+"."+key])
		return n
	}
	for _, l := range b.Bundle.Links {
		if l.Name == "lo" || !l.Up {
			continue
		}
		ignore := max(sysctl("all", "arp_ignore"), sysctl(l.Name, "arp_ignore"))
		announce := max(sysctl("all", "arp_announce"), sysctl(l.Name, "arp_announce"))
		if ignore < 1 || announce < 2 {
			out = append(out, Finding{Box: b.Name, Where: "sysctl net.ipv4.conf." + l.Name, What: fmt.Sprintf(
				"the VIP is on lo, yet %s has arp_ignore %d and arp_announce %d (want 1 and 2): it answers ARP for the VIP and takes clients from the MASTER", l.Name, ignore, announce)})
		}
	}
	return out
}

// strictAndProtocol: what keeps a box from serving the VIP's clients at
// all: vrrp_strict's drop, a service keepalived makes UDP.
func (b *Box) strictAndProtocol() []Finding {
	var out []Finding
	if at := b.dropsVIPs(); at != "" {
		out = append(out, Finding{Box: b.Name, Where: at, What: "vrrp_strict: keepalived drops every packet to the VIPs on the box that holds them (accept does not undo it under VRRP version 2): no connection reaches IPVS; remove vrrp_strict"})
	}
	for _, vs := range b.Config.VirtualServers {
		if vs.Mark == 0 && vs.ProtocolPos.Line == 0 {
			out = append(out, Finding{Box: b.Name, Where: b.at(vs.Pos), What: fmt.Sprintf(
				"virtual_server %s has no protocol line: keepalived makes it UDP, so TCP clients of the VIP are not balanced (the MASTER serves them itself); write protocol TCP", vs.Key())})
		}
	}
	return out
}

// unguarded: b's rules mark VIP traffic that o forwards (no
// "! --mac-source" of o's MAC) for a mark a service of b is declared by.
func (b *Box) unguarded(o *Box) []Finding {
	mac := o.mac()
	if b.Rules == nil || mac == "" {
		return nil
	}
	var out []Finding
	for _, m := range b.Rules.Marks {
		if slices.Contains(b.fwmarks(), m.Mark) && m.Marks(mac) {
			out = append(out, Finding{Box: b.Name, Where: m.Pos.String(), What: fmt.Sprintf(
				"marks %d the VIP traffic %s forwards too (no ! --mac-source %s): the guard does not guard against it", m.Mark, o.Name, mac)})
		}
	}
	return out
}

// crashHole: a guard against o without the REDIRECT beside it. After a
// MASTER's crash its IPVS connection entries send a reused client port
// back past the guard; REDIRECTing what o forwards closes that (Findings).
func (b *Box) crashHole(o *Box) []Finding {
	mac := o.mac()
	if b.Rules == nil || mac == "" {
		return nil
	}
	var out []Finding
	for _, m := range b.Rules.Marks {
		if !slices.Contains(b.fwmarks(), m.Mark) || m.Marks(mac) {
			continue
		}
		f := flow{netip.AddrPortFrom(m.Dst, m.Port), m.Proto}
		if !slices.ContainsFunc(b.Rules.Redirects, func(r check.MarkRule) bool {
			return r.Only != nil && r.Marks(mac) && (flow{netip.AddrPortFrom(r.Dst, r.Port), r.Proto}).overlaps(f)
		}) {
			hw, _ := net.ParseMAC(mac)
			g := director.Guard{VIP: m.Dst, Port: m.Port, Protocol: m.Proto, PeerMAC: hw}
			out = append(out, Finding{Box: b.Name, Where: m.Pos.String(), What: fmt.Sprintf(
				"guards against %s but does not REDIRECT what it forwards (iptables -t nat -A PREROUTING %s): after a MASTER's crash its connection entries send a reused client port back past the guard (docs/findings.md)",
				o.Name, strings.Join(g.Redirects()[0], " "))})
		}
	}
	return out
}

// sendsTo is b's first virtual service with a DR realserver at one of o's
// addresses.
func (b *Box) sendsTo(o *Box) *keepalivedconf.VirtualServer {
	for _, vs := range b.Config.VirtualServers {
		// A service without a protocol line is UDP, keepalived's
		// default: the clients' TCP never enters it (noProtocol says so).
		if vs.LBKind != "DR" || vs.Mark == 0 && vs.ProtocolPos.Line == 0 {
			continue
		}
		for _, rs := range vs.RealServers {
			if slices.Contains(o.addrs(), rs.Addr) {
				return vs
			}
		}
	}
	return nil
}

// flow is traffic a virtual service takes: a destination (an invalid
// address or port 0 is any) and a protocol ("" any).
type flow struct {
	dst   netip.AddrPort
	proto string
}

func (f flow) overlaps(g flow) bool {
	a, t := f.dst, g.dst
	return (!a.Addr().IsValid() || !t.Addr().IsValid() || a.Addr() == t.Addr()) &&
		(a.Port() == 0 || t.Port() == 0 || a.Port() == t.Port()) &&
		(f.proto == "" || g.proto == "" || f.proto == g.proto)
}

// flows are what vs takes: its VIP and port, each address and port of its
// group, or for a service by mark each destination its box's rules mark
// for it.
func (b *Box) flows(vs *keepalivedconf.VirtualServer) []flow {
	proto := strings.ToLower(vs.Protocol)
	switch {
	case vs.Mark != 0:
		var out []flow
		if b.Rules != nil {
			for _, m := range b.Rules.Setting(vs.Mark) {
				out = append(out, flow{netip.AddrPortFrom(m.Dst, m.Port), m.Proto})
			}
		}
		return out
	case vs.Group != "":
		var out []flow
		if g := b.Config.ServerGroups[vs.Group]; g != nil {
			for _, e := range g.Entries {
				for a := e.First; a.IsValid() && a.Compare(e.Last) <= 0; a = a.Next() {
					out = append(out, flow{netip.AddrPortFrom(a, e.Port), proto})
				}
			}
		}
		return out
	}
	return []flow{{netip.AddrPortFrom(vs.Addr, vs.Port), proto}}
}

// redirected says which of b's nat REDIRECT rules sends f to b's own
// sockets before IPVS sees it, or "".
func (b *Box) redirected(f flow) string {
	if b.Rules == nil {
		return ""
	}
	for _, r := range b.Rules.Redirects {
		if (flow{netip.AddrPortFrom(r.Dst, r.Port), r.Proto}).overlaps(f) {
			return r.Pos.String()
		}
	}
	return ""
}

// takesAgain says why b's IPVS takes again the traffic of vs (a service
// of from) that from forwards, or "".
func (b *Box) takesAgain(from *Box, vs *keepalivedconf.VirtualServer) string {
	if b.Bundle.Sysctls["net.ipv4.vs.backup_only"] == "1" {
		return ""
	}
	for _, t := range from.flows(vs) {
		if b.redirected(t) != "" {
			continue
		}
		for _, own := range b.Config.VirtualServers {
			if own.Mark == 0 && slices.ContainsFunc(b.flows(own), t.overlaps) {
				return fmt.Sprintf("its virtual_server %s (%s) is by address: nothing tells %s's packets apart", own.Key(), b.at(own.Pos), from.Name)
			}
			if own.Mark == 0 || b.Rules == nil {
				continue
			}
			for _, m := range b.Rules.Setting(own.Mark) {
				if (flow{netip.AddrPortFrom(m.Dst, m.Port), m.Proto}).overlaps(t) && m.Marks(from.mac()) {
					return fmt.Sprintf("its rule %s marks them %d for virtual_server fwmark %d (%s)", m.Pos, m.Mark, own.Mark, b.at(own.Pos))
				}
			}
		}
	}
	return ""
}

// dropsVIPs says where b's keepalived drops every packet to the VIPs it
// holds (vrrp_strict, an instance without accept or under VRRP version
// 2, which resets accept), or "": such a box serves none of it.
func (b *Box) dropsVIPs() string {
	if len(b.Config.StrictDrops()) == 0 {
		return ""
	}
	return b.at(b.Config.Global.VRRPStrictPos)
}

// loopsByConfig: two boxes each sending to the other, each taking again
// what the other forwards.
func loopsByConfig(boxes []*Box) []Finding {
	var out []Finding
	for i, a := range boxes {
		for _, b := range boxes[i+1:] {
			ab, ba := a.sendsTo(b), b.sendsTo(a)
			if ab == nil || ba == nil || a.dropsVIPs() != "" || b.dropsVIPs() != "" {
				continue
			}
			whyB, whyA := b.takesAgain(a, ab), a.takesAgain(b, ba)
			if whyB == "" || whyA == "" {
				continue
			}
			out = append(out, Finding{Box: a.Name + "+" + b.Name, Where: a.at(ab.Pos) + ", " + b.at(ba.Pos), Loop: true, What: fmt.Sprintf(
				"the two-box loop, by the configs: %s sends to %s and %s takes it again (%s); %s sends to %s and %s takes it again (%s). Fix: lvslab check on these bundles writes the guard",
				a.Name, b.Name, b.Name, whyB, b.Name, a.Name, a.Name, whyA)})
		}
	}
	return out
}

// differingRealservers: virtual services of the same key whose
// realservers differ between boxes.
func differingRealservers(boxes []*Box) []Finding {
	var out []Finding
	for i, a := range boxes {
		for _, b := range boxes[i+1:] {
			for _, va := range a.Config.VirtualServers {
				for _, vb := range b.Config.VirtualServers {
					if va.Key() != vb.Key() {
						continue
					}
					ra, rb := realservers(va), realservers(vb)
					if !slices.Equal(ra, rb) {
						out = append(out, Finding{Box: a.Name + "+" + b.Name, Where: a.at(va.Pos) + ", " + b.at(vb.Pos), What: fmt.Sprintf(
							"virtual_server %s lists %s on %s but %s on %s: after a failover the clients reach other servers", va.Key(), strings.Join(ra, " "), a.Name, strings.Join(rb, " "), b.Name)})
					}
				}
			}
		}
	}
	return out
}

func realservers(vs *keepalivedconf.VirtualServer) []string {
	var out []string
	for _, rs := range vs.RealServers {
		out = append(out, netip.AddrPortFrom(rs.Addr, rs.Port).String())
	}
	slices.Sort(out)
	return out
}
