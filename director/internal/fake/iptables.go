package fake

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// chainKey is a chain of a table.
type chainKey struct{ table, chain string }

// IPTables keeps rules as joined rulespecs per table and chain (the
// interface director.IPTables); the built-in chains always exist. Exists matches rulespecs to the letter.
type IPTables struct {
	mu     sync.Mutex
	chains map[chainKey][]string
	// Calls counts mutating calls, so tests can see a no-op; Reads the
	// others (each an iptables exec too, on a real system).
	Calls, Reads int
}

var builtin = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// NewIPTables returns empty tables.
func NewIPTables() *IPTables { return &IPTables{chains: map[chainKey][]string{}} }

func (f *IPTables) has(table, chain string) bool {
	_, ok := f.chains[chainKey{table, chain}]
	return ok || slices.Contains(builtin, chain)
}

// ChainExists implements director.IPTables.
func (f *IPTables) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	return f.has(table, chain), nil
}

// ClearChain implements director.IPTables.
func (f *IPTables) ClearChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	f.chains[chainKey{table, chain}] = nil
	return nil
}

// DeleteChain implements director.IPTables.
func (f *IPTables) DeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	k := chainKey{table, chain}
	if len(f.chains[k]) > 0 {
		return fmt.Errorf("chain %s is not empty", chain)
	}
	delete(f.chains, k)
	return nil
}

// Exists implements director.IPTables.
func (f *IPTables) Exists(table, chain string, rulespec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	return slices.Contains(f.chains[chainKey{table, chain}], strings.Join(rulespec, " ")), nil
}

// Insert implements director.IPTables.
func (f *IPTables) Insert(table, chain string, pos int, rulespec ...string) error {
	return f.add(table, chain, pos-1, rulespec)
}

// Append implements director.IPTables.
func (f *IPTables) Append(table, chain string, rulespec ...string) error {
	return f.add(table, chain, -1, rulespec)
}

// add puts a rule at index i of the chain, or at its end when i < 0.
func (f *IPTables) add(table, chain string, i int, rulespec []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if !f.has(table, chain) {
		return fmt.Errorf("no chain %s", chain)
	}
	k := chainKey{table, chain}
	if i < 0 {
		i = len(f.chains[k])
	}
	f.chains[k] = slices.Insert(f.chains[k], i, strings.Join(rulespec, " "))
	return nil
}

// DeleteIfExists implements director.IPTables.
func (f *IPTables) DeleteIfExists(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := chainKey{table, chain}
	if i := slices.Index(f.chains[k], strings.Join(rulespec, " ")); i >= 0 {
		f.Calls++
		f.chains[k] = slices.Delete(f.chains[k], i, i+1)
	}
	return nil
}

// List implements director.IPTables: "-N chain" (or "-P chain ACCEPT"), then rules.
func (f *IPTables) List(table, chain string) ([]string, error) {
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
	for _, r := range f.chains[chainKey{table, chain}] {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

// Save renders a table like iptables-save without counters: the golden
// format. Built-in chains come first, then the others, each sorted.
func (f *IPTables) Save(table string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var decl, rules []string
	var names []string
	for k := range f.chains {
		if k.table == table {
			names = append(names, k.chain)
		}
	}
	slices.Sort(names)
	for _, c := range names {
		if !slices.Contains(builtin, c) {
			decl = append(decl, ":"+c+" - [0:0]")
		}
		for _, r := range f.chains[chainKey{table, c}] {
			rules = append(rules, "-A "+c+" "+r)
		}
	}
	return "*" + table + "\n" + strings.Join(append(decl, rules...), "\n") + "\nCOMMIT\n"
}
