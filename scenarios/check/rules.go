package check

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// Rules are a box's iptables rules that mark VIP traffic: what decides
// which packets a fwmark virtual service takes.
type Rules struct {
	Path  string
	Marks []MarkRule
	// Redirects are nat PREROUTING REDIRECT rules (their Mark is 0): what
	// they match goes to the box's own sockets, not to IPVS (the REDIRECT
	// fix, as notify scripts make it on a BACKUP).
	Redirects []MarkRule
}

// MarkRule is one mangle PREROUTING rule setting a mark.
type MarkRule struct {
	Pos   keepalivedconf.Pos
	Text  string
	Dst   netip.Addr
	Port  uint16
	Proto string // -p: tcp, udp, or "" for any
	Mark  uint32
	// Excluded are the MACs of its "! --mac-source" matches: the guard,
	// one per other box (matches in one rule AND); a rule without them
	// marks the other boxes' packets too. Only is a "--mac-source" match's
	// MAC: the rule marks that sender's packets alone.
	Excluded []net.HardwareAddr
	Only     net.HardwareAddr
}

// ParseRules reads iptables-save/iptables-restore text, or lines of
// `iptables -t mangle -A PREROUTING ...` commands, keeping the mangle
// PREROUTING rules that set a mark (MARK --set-mark or --set-xmark).
func ParseRules(path string, text []byte) (*Rules, error) {
	r := &Rules{Path: path}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		return nil, keepalivedconf.Errorf(keepalivedconf.Pos{File: path, Line: bytes.Count(text[:i], []byte("\n")) + 1},
			"a NUL byte: this is no iptables-save output nor iptables commands")
	}
	table := "filter"
	for i, line := range strings.Split(string(text), "\n") {
		pos := keepalivedconf.Pos{File: path, Line: i + 1}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '*' {
			table = line[1:]
			continue
		}
		f := strings.Fields(line)
		t := table
		if len(f) > 0 && (f[0] == "iptables" || f[0] == "iptables-nft" || f[0] == "iptables-legacy") {
			f, t = f[1:], "filter"
		}
		rule, chain, target, err := parseRule(pos, line, f, &t)
		if err != nil {
			return nil, err
		}
		switch {
		case t == "mangle" && chain == "PREROUTING" && target == "MARK" && rule.Mark != 0:
			r.Marks = append(r.Marks, rule)
		case t == "nat" && chain == "PREROUTING" && target == "REDIRECT":
			r.Redirects = append(r.Redirects, rule)
		}
	}
	return r, nil
}

// parseRule reads one rule's words f (line, at pos): its match, chain
// and target; a -t among them changes *t, the table.
func parseRule(pos keepalivedconf.Pos, line string, f []string, t *string) (rule MarkRule, chain, target string, err error) {
	rule = MarkRule{Pos: pos, Text: line}
	not := false
	for k := 0; k < len(f); k++ {
		next := func() string {
			if k+1 < len(f) {
				k++
				return f[k]
			}
			return ""
		}
		switch f[k] {
		case "-t", "--table":
			*t = next()
		case "-A", "--append", "-I", "--insert":
			chain = next()
		case "-d", "--destination":
			a, err := netip.ParsePrefix(withBits(next()))
			if err != nil {
				return rule, "", "", keepalivedconf.Errorf(pos, "-d: %v", err)
			}
			rule.Dst = a.Addr()
		case "-p", "--protocol":
			rule.Proto = strings.ToLower(next())
		case "--dport", "--destination-port":
			p, err := strconv.ParseUint(next(), 10, 16)
			if err != nil {
				return rule, "", "", keepalivedconf.Errorf(pos, "--dport: %v", err)
			}
			rule.Port = uint16(p)
		case "!":
			not = k+1 < len(f) && f[k+1] == "--mac-source"
		case "--mac-source":
			mac, err := net.ParseMAC(next())
			if err != nil {
				return rule, "", "", keepalivedconf.Errorf(pos, "--mac-source: %v", err)
			}
			if not {
				rule.Excluded = append(rule.Excluded, mac)
			} else {
				rule.Only = mac
			}
			not = false
		case "-j", "--jump":
			target = next()
		case "--set-mark", "--set-xmark":
			v, _, _ := strings.Cut(next(), "/")
			m, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return rule, "", "", keepalivedconf.Errorf(pos, "%s: %v", f[k-1], err)
			}
			rule.Mark = uint32(m)
		}
	}
	return rule, chain, target, nil
}

func withBits(s string) string {
	if strings.Contains(s, "/") {
		return s
	}
	return s + "/32"
}

// Setting returns the rules that set mark.
func (r *Rules) Setting(mark uint32) []MarkRule {
	var out []MarkRule
	for _, m := range r.Marks {
		if m.Mark == mark {
			out = append(out, m)
		}
	}
	return out
}

// guards reports whether the rule marks only what none of peers sent.
func (m MarkRule) guards(peers []string) bool {
	return m.Only == nil && !slices.ContainsFunc(peers, m.Marks)
}

// Marks reports whether the rule marks (or, of nat, redirects) what the
// sender with this MAC sends: its one --mac-source is that MAC, or none
// of its "! --mac-source" is.
func (m MarkRule) Marks(mac string) bool {
	if m.Only != nil {
		return m.Only.String() == mac
	}
	return !slices.ContainsFunc(m.Excluded, func(x net.HardwareAddr) bool { return x.String() == mac })
}

// excluded is the MAC the rules' guard excludes (the other box's of a
// pair, as the user wrote it), if a rule names exactly one; nil rules
// name none.
func (r *Rules) excluded() net.HardwareAddr {
	if r == nil {
		return nil
	}
	for _, m := range r.Marks {
		if len(m.Excluded) == 1 {
			return m.Excluded[0]
		}
	}
	return nil
}

// Restore is iptables-restore input adding the mark rules (not the rest
// of the file: the lab applies only what marks VIP traffic), less those
// at the positions in drop (rules a prescription replaces); "" for nil
// rules or none.
func (r *Rules) Restore(drop ...keepalivedconf.Pos) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	for _, m := range r.Marks {
		if !slices.Contains(drop, m.Pos) {
			b.WriteString(strings.Join(m.op(), " ") + "\n")
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "*mangle\n" + b.String() + "COMMIT\n"
}

// op is the rule from its -A or -I on: what iptables-restore takes.
func (m MarkRule) op() []string {
	f := strings.Fields(m.Text)
	for k, w := range f {
		if w == "-A" || w == "--append" || w == "-I" || w == "--insert" {
			return f[k:]
		}
	}
	return f
}

// Delete is the iptables command that removes the rule: -D with its
// chain and matches (an -I's rule number dropped).
func (m MarkRule) Delete() string {
	f := m.op()
	rest := f[2:]
	if len(rest) > 0 && (f[0] == "-I" || f[0] == "--insert") && strings.Trim(rest[0], "0123456789") == "" {
		rest = rest[1:]
	}
	return "iptables -t mangle -D " + f[1] + " " + strings.Join(rest, " ")
}
