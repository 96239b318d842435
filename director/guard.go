package director

import (
	"cmp"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

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
	// Mark is set within Mask; the packet's other mark bits are left to
	// whoever else marks (kube-proxy, Cilium, Tailscale). 0: every bit.
	Mark, Mask uint32
}

// Rule is the guard's rulespec, as iptables takes it. Without a PeerMAC
// it marks all traffic to VIP:Port.
func (g Guard) Rule() []string {
	r := []string{"-d", g.VIP.String() + "/32", "-p", g.Protocol, "--dport", strconv.Itoa(int(g.Port))}
	if g.PeerMAC != nil {
		r = append(r, "-m", "mac", "!", "--mac-source", g.PeerMAC.String())
	}
	mask := cmp.Or(g.Mask, 0xffffffff)
	return append(r, "-j", "MARK", "--set-xmark", fmt.Sprintf("%#x/%#x", g.Mark, mask))
}

// DefaultMask is the guard's mask when the config gives none: the bits up
// to the mark's highest (0x3 for mark 3, 0x7 for 4).
func DefaultMask(mark uint32) uint32 { return 1<<bits.Len32(mark) - 1 }

var jump = []string{"-j", GuardChain}

// EnsureGuard makes the guard chain hold exactly g's rule and PREROUTING
// jump to it; it reports whether it changed anything. It adopts what a
// crashed run left.
func EnsureGuard(ipt IPTables, g Guard) (bool, error) {
	changed := false
	ok, err := ipt.ChainExists(GuardTable, GuardChain)
	if err != nil {
		return false, fmt.Errorf("look for chain %s: %w", GuardChain, err)
	}
	rules := 0
	if ok {
		list, err := ipt.List(GuardTable, GuardChain)
		if err != nil {
			return false, fmt.Errorf("list chain %s: %w", GuardChain, err)
		}
		rules = len(list) - 1 // the first line is "-N chain"
	}
	present := false
	if ok && rules == 1 {
		if present, err = ipt.Exists(GuardTable, GuardChain, g.Rule()...); err != nil {
			return false, fmt.Errorf("check guard rule: %w", err)
		}
	}
	if !present {
		// ClearChain creates the chain, or empties it.
		if err := ipt.ClearChain(GuardTable, GuardChain); err != nil {
			return false, fmt.Errorf("create chain %s: %w", GuardChain, err)
		}
		if err := ipt.Append(GuardTable, GuardChain, g.Rule()...); err != nil {
			return false, fmt.Errorf("add guard rule %s: %w", strings.Join(g.Rule(), " "), err)
		}
		changed = true
	}
	if ok, err := ipt.Exists(GuardTable, guardHook, jump...); err != nil {
		return changed, fmt.Errorf("check jump to %s: %w", GuardChain, err)
	} else if !ok {
		if err := ipt.Insert(GuardTable, guardHook, 1, jump...); err != nil {
			return changed, fmt.Errorf("add jump to %s: %w", GuardChain, err)
		}
		changed = true
	}
	return changed, nil
}

// RemoveGuard deletes the jump and the chain, if they exist. (Without the
// chain there is no jump: iptables refuses a jump to a missing chain, and
// even the check for one fails.)
func RemoveGuard(ipt IPTables) error {
	ok, err := ipt.ChainExists(GuardTable, GuardChain)
	if err != nil || !ok {
		return err
	}
	if err := ipt.DeleteIfExists(GuardTable, guardHook, jump...); err != nil {
		return fmt.Errorf("delete jump to %s: %w", GuardChain, err)
	}
	if err := ipt.ClearChain(GuardTable, GuardChain); err != nil {
		return fmt.Errorf("flush chain %s: %w", GuardChain, err)
	}
	if err := ipt.DeleteChain(GuardTable, GuardChain); err != nil {
		return fmt.Errorf("delete chain %s: %w", GuardChain, err)
	}
	return nil
}

// FakeIPTables keeps rules as joined rulespecs per table and chain; the
// built-in chains always exist. Exists matches rulespecs to the letter.
type FakeIPTables struct {
	mu     sync.Mutex
	chains map[string][]string // "table chain" -> rules
	// Calls counts mutating calls, so tests can see a no-op; Reads the
	// others (each an iptables exec too, on a real system).
	Calls, Reads int
}

var _ IPTables = (*FakeIPTables)(nil)

var builtin = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// NewFakeIPTables returns empty tables.
func NewFakeIPTables() *FakeIPTables { return &FakeIPTables{chains: map[string][]string{}} }

func (f *FakeIPTables) has(table, chain string) bool {
	_, ok := f.chains[table+" "+chain]
	return ok || slices.Contains(builtin, chain)
}

// ChainExists implements IPTables.
func (f *FakeIPTables) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	return f.has(table, chain), nil
}

// ClearChain implements IPTables.
func (f *FakeIPTables) ClearChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	f.chains[table+" "+chain] = nil
	return nil
}

// DeleteChain implements IPTables.
func (f *FakeIPTables) DeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	k := table + " " + chain
	if len(f.chains[k]) > 0 {
		return fmt.Errorf("chain %s is not empty", chain)
	}
	delete(f.chains, k)
	return nil
}

// Exists implements IPTables.
func (f *FakeIPTables) Exists(table, chain string, rulespec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	return slices.Contains(f.chains[table+" "+chain], strings.Join(rulespec, " ")), nil
}

// Insert implements IPTables.
func (f *FakeIPTables) Insert(table, chain string, pos int, rulespec ...string) error {
	return f.add(table, chain, pos-1, rulespec)
}

// Append implements IPTables.
func (f *FakeIPTables) Append(table, chain string, rulespec ...string) error {
	return f.add(table, chain, -1, rulespec)
}

// add puts a rule at index i of the chain, or at its end when i < 0.
func (f *FakeIPTables) add(table, chain string, i int, rulespec []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if !f.has(table, chain) {
		return fmt.Errorf("no chain %s", chain)
	}
	k := table + " " + chain
	if i < 0 {
		i = len(f.chains[k])
	}
	f.chains[k] = slices.Insert(f.chains[k], i, strings.Join(rulespec, " "))
	return nil
}

// DeleteIfExists implements IPTables.
func (f *FakeIPTables) DeleteIfExists(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := table + " " + chain
	if i := slices.Index(f.chains[k], strings.Join(rulespec, " ")); i >= 0 {
		f.Calls++
		f.chains[k] = slices.Delete(f.chains[k], i, i+1)
	}
	return nil
}

// List implements IPTables: "-N chain" (or "-P chain ACCEPT"), then rules.
func (f *FakeIPTables) List(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	if !f.has(table, chain) {
		return nil, fmt.Errorf("no chain %s", chain)
	}
	head := "-N " + chain
	if slices.Contains(builtin, chain) {
		head = "-P " + chain + " ACCEPT"
	}
	out := []string{head}
	for _, r := range f.chains[table+" "+chain] {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

// Save renders a table like iptables-save without counters: the golden
// format. Built-in chains come first, then the others, each sorted.
func (f *FakeIPTables) Save(table string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var decl, rules []string
	var names []string
	for k := range f.chains {
		if t, c, _ := strings.Cut(k, " "); t == table {
			names = append(names, c)
		}
	}
	slices.Sort(names)
	for _, c := range names {
		if !slices.Contains(builtin, c) {
			decl = append(decl, ":"+c+" - [0:0]")
		}
		for _, r := range f.chains[table+" "+c] {
			rules = append(rules, "-A "+c+" "+r)
		}
	}
	return "*" + table + "\n" + strings.Join(append(decl, rules...), "\n") + "\nCOMMIT\n"
}
