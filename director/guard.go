package director

import (
	"cmp"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// IPTables is the subset of *iptables.IPTables the loop guard uses; the
// fake below implements it too.
type IPTables interface {
	ChainExists(table, chain string) (bool, error)
	ClearChain(table, chain string) error
	DeleteChain(table, chain string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
	List(table, chain string) ([]string, error)
}

var _ IPTables = (*iptables.IPTables)(nil)

// The guard lives in a chain of its own in mangle, jumped to from
// PREROUTING: IPVS hooks LOCAL_IN, after mangle PREROUTING, so the mark is
// set before IPVS looks for a fwmark service.
const (
	GuardTable = "mangle"
	GuardChain = "LVSLAB-GUARD"
	guardHook  = "PREROUTING"
)

// Guard is the seed's fix: mark traffic to VIP:Port unless it comes from
// the peer director's MAC, and declare the virtual service by that mark, so
// what the peer forwards here is not balanced again but served locally.
type Guard struct {
	VIP      netip.Addr
	Port     uint16
	Protocol string // tcp or udp
	PeerMAC  net.HardwareAddr
	// PeerMACs are more boxes' MACs (three or four directors): traffic
	// from any of them is not marked either (matches in one rule AND).
	PeerMACs []net.HardwareAddr
	// Mark is set within Mask; the packet's other mark bits are left to
	// whoever else marks (kube-proxy, Cilium, Tailscale). 0: every bit.
	Mark, Mask uint32
}

// Rule is the guard's rulespec, as iptables takes it. Without a PeerMAC
// it marks all traffic to VIP:Port.
func (g Guard) Rule() []string {
	r := []string{"-d", g.VIP.String() + "/32", "-p", g.Protocol, "--dport", strconv.Itoa(int(g.Port))}
	for _, m := range append([]net.HardwareAddr{g.PeerMAC}, g.PeerMACs...) {
		if m != nil {
			r = append(r, "-m", "mac", "!", "--mac-source", m.String())
		}
	}
	mask := cmp.Or(g.Mask, 0xffffffff)
	return append(r, "-j", "MARK", "--set-xmark", fmt.Sprintf("%#x/%#x", g.Mark, mask))
}

// Redirects are the rulespecs, in nat PREROUTING, that close the crash
// hole beside the guard: one per peer, sending the traffic to VIP:Port it
// forwards to this box's own sockets before IPVS looks it up, so no
// connection entry a killed MASTER left can take it (scenarios' Findings:
// the guard alone, half of the reused ports that MASTER had sent on
// looped; with these, none).
func (g Guard) Redirects() [][]string {
	var out [][]string
	for _, m := range append([]net.HardwareAddr{g.PeerMAC}, g.PeerMACs...) {
		if m != nil {
			out = append(out, []string{"-d", g.VIP.String() + "/32", "-p", g.Protocol, "--dport", strconv.Itoa(int(g.Port)),
				"-m", "mac", "--mac-source", m.String(), "-j", "REDIRECT"})
		}
	}
	return out
}

// DefaultMask is the guard's mask when the config gives none: the bits up
// to the mark's highest (0x3 for mark 3, 0x7 for 4).
func DefaultMask(mark uint32) uint32 { return 1<<bits.Len32(mark) - 1 }

// RedirectChain holds, in nat PREROUTING, the peer REDIRECTs beside the
// guard (Guard.Redirects): nat PREROUTING runs before IPVS too.
const RedirectChain = "LVSLAB-REDIRECT"

// chain is a chain of the director's own: its rules, jumped to first
// from a built-in hook of its table.
type chain struct{ table, name, hook string }

var (
	guardChain    = chain{GuardTable, GuardChain, guardHook}
	redirectChain = chain{"nat", RedirectChain, "PREROUTING"}
)

// ensureGuard makes the guard chain hold exactly g's rule and PREROUTING
// jump to it; it reports whether it changed anything.
func ensureGuard(ipt IPTables, g Guard) (bool, error) {
	return guardChain.ensure(ipt, [][]string{g.Rule()})
}

// removeGuard deletes the guard's jump and chain, if they exist.
func removeGuard(ipt IPTables) error { return guardChain.remove(ipt) }

// ensure makes ch hold exactly rules and its hook jump to it; it reports
// whether it changed anything. It adopts what a crashed run left.
func (ch chain) ensure(ipt IPTables, rules [][]string) (bool, error) {
	changed := false
	ok, err := ipt.ChainExists(ch.table, ch.name)
	if err != nil {
		return false, fmt.Errorf("look for chain %s: %w", ch.name, err)
	}
	present := false
	if ok {
		list, err := ipt.List(ch.table, ch.name)
		if err != nil {
			return false, fmt.Errorf("list chain %s: %w", ch.name, err)
		}
		present = len(list)-1 == len(rules) // the first line is "-N chain"
		for _, r := range rules {
			if !present {
				break
			}
			if present, err = ipt.Exists(ch.table, ch.name, r...); err != nil {
				return false, fmt.Errorf("check rule %s: %w", strings.Join(r, " "), err)
			}
		}
	}
	if !present {
		// ClearChain creates the chain, or empties it.
		if err := ipt.ClearChain(ch.table, ch.name); err != nil {
			return false, fmt.Errorf("create chain %s: %w", ch.name, err)
		}
		for _, r := range rules {
			if err := ipt.Append(ch.table, ch.name, r...); err != nil {
				return false, fmt.Errorf("add rule %s: %w", strings.Join(r, " "), err)
			}
		}
		changed = true
	}
	jump := []string{"-j", ch.name}
	if ok, err := ipt.Exists(ch.table, ch.hook, jump...); err != nil {
		return changed, fmt.Errorf("check jump to %s: %w", ch.name, err)
	} else if !ok {
		if err := ipt.Insert(ch.table, ch.hook, 1, jump...); err != nil {
			return changed, fmt.Errorf("add jump to %s: %w", ch.name, err)
		}
		changed = true
	}
	return changed, nil
}

// remove deletes ch's jump and ch, if they exist. (Without the chain
// there is no jump: iptables refuses a jump to a missing chain, and even
// the check for one fails.)
func (ch chain) remove(ipt IPTables) error {
	ok, err := ipt.ChainExists(ch.table, ch.name)
	if err != nil || !ok {
		return err
	}
	if err := ipt.DeleteIfExists(ch.table, ch.hook, "-j", ch.name); err != nil {
		return fmt.Errorf("delete jump to %s: %w", ch.name, err)
	}
	if err := ipt.ClearChain(ch.table, ch.name); err != nil {
		return fmt.Errorf("flush chain %s: %w", ch.name, err)
	}
	if err := ipt.DeleteChain(ch.table, ch.name); err != nil {
		return fmt.Errorf("delete chain %s: %w", ch.name, err)
	}
	return nil
}
