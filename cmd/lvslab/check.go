package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lvslab/lvslab/scenarios/check"
)

// listFlag collects a repeated flag's values.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// cmdCheck reads the user's pair of keepalived configs, derives the lab
// for it and writes the fix for it. Running that lab through the events
// is the part of issue 11 still to come; this says so.
func cmdCheck(args []string) error {
	fs := newFlags("check")
	var rules, macs, addrs, ports listFlag
	fs.Var(&rules, "iptables", "a box's iptables rules (iptables-save output or iptables commands); give it twice, box 1 then box 2")
	fs.Var(&macs, "mac", "BOX=MAC: a box's MAC (d1 or d2; default 02:00 and its IPv4 address)")
	fs.Var(&addrs, "addr", "BOX=IP: a box's own address, where the configs do not say (no unicast_src_ip or unicast_peer)")
	fs.Var(&ports, "port", "MARK=PORT: a port a fwmark service takes, when no --iptables rule says")
	fixed := fs.String("write-fixed", "", "write each box's fixed config files and iptables-restore rules under DIR/d1, DIR/d2")
	asJSON := fs.Bool("json", false, "print the parsed configs, the derived lab and the prescription as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError("want: lvslab check [flags] BOX1.conf BOX2.conf")
	}
	if len(rules) != 0 && len(rules) != 2 {
		return usageError("--iptables: give it twice (box 1's rules, then box 2's) or not at all")
	}
	var rulePaths [2]string
	copy(rulePaths[:], rules)
	p, err := check.LoadPair([2]string{fs.Arg(0), fs.Arg(1)}, rulePaths)
	if err != nil {
		return &exitError{2, err} // a config or rules file we cannot read or parse
	}
	if err := boxFlags(p, macs, addrs, ports); err != nil {
		return err
	}
	pl, err := check.Derive(p)
	if err != nil {
		return &exitError{2, err}
	}
	rx, err := check.Prescribe(p, pl)
	if err != nil {
		return &exitError{2, err}
	}
	if *fixed != "" {
		if err := writeFixed(*fixed, p, pl, rx); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"configs": p.Configs, "plan": pl, "prescription": rx}); err != nil {
			return err
		}
	} else {
		printCheck(os.Stdout, p, pl, rx, *fixed)
	}
	if len(rx.Boxes[0].Rules)+len(rx.Boxes[1].Rules)+len(rx.Notes) > 0 {
		return &exitError{code: 1} // something to fix; explained above
	}
	return nil
}

// boxFlags applies --mac, --addr and --port.
func boxFlags(p *check.Pair, macs, addrs, ports []string) error {
	box := func(flag, v string) (int, string, error) {
		b, val, ok := strings.Cut(v, "=")
		if !ok || (b != "d1" && b != "d2") {
			return 0, "", usageError("--%s %q: want d1=VALUE or d2=VALUE", flag, v)
		}
		return int(b[1] - '1'), val, nil
	}
	for _, v := range macs {
		i, val, err := box("mac", v)
		if err != nil {
			return err
		}
		if p.MACs[i], err = net.ParseMAC(val); err != nil {
			return usageError("--mac %q: %v", v, err)
		}
	}
	for _, v := range addrs {
		i, val, err := box("addr", v)
		if err != nil {
			return err
		}
		if p.Addrs[i], err = netip.ParseAddr(val); err != nil {
			return usageError("--addr %q: %v", v, err)
		}
	}
	for _, v := range ports {
		m, port, ok := strings.Cut(v, "=")
		mark, err1 := strconv.ParseUint(m, 0, 32)
		n, err2 := strconv.ParseUint(port, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return usageError("--port %q: want MARK=PORT", v)
		}
		p.Ports[uint32(mark)] = append(p.Ports[uint32(mark)], uint16(n))
	}
	return nil
}

func printCheck(w io.Writer, p *check.Pair, pl *check.Plan, rx *check.Prescription, fixed string) {
	fmt.Fprintf(w, "Your configuration\n")
	for i, c := range p.Configs {
		fmt.Fprintf(w, "  %s: %s (%d file(s)): %d vrrp_instance, %d virtual_server, %d keyword(s) kept as written (--json lists them)\n",
			pl.Boxes[i].Node, p.Paths[i], len(c.Files), len(c.Instances), len(c.VirtualServers), len(c.Unmodelled))
	}
	fmt.Fprintf(w, "\nThe lab for it\n  bridge lan %s; client %s\n", pl.Subnet, pl.Client)
	for _, b := range pl.Boxes {
		fmt.Fprintf(w, "  %s %s %s, %s priority %d\n", b.Node, b.Addr, b.MAC, b.State, b.Priority)
	}
	for _, a := range pl.Realservers {
		fmt.Fprintf(w, "  realserver %s\n", a)
	}
	for _, s := range pl.Services {
		fmt.Fprintf(w, "  service %s -> %s ports %v, lb_kind %s\n", s.Key, s.VIP, s.Ports, s.Kind)
	}
	fmt.Fprintf(w, "\nMappings\n")
	for _, m := range pl.Mappings {
		fmt.Fprintf(w, "  %-3s %s -> %s: %s\n", m.Box, m.From, m.To, m.Why)
	}
	fmt.Fprintf(w, "\nThe fix\n")
	if len(rx.Boxes[0].Rules)+len(rx.Boxes[1].Rules)+len(rx.Notes) == 0 {
		fmt.Fprintf(w, "  nothing to change: every DR service is declared by a mark its rules set only on traffic the other box did not send\n")
	}
	for _, b := range rx.Boxes {
		if len(b.Rules) == 0 {
			continue
		}
		fmt.Fprintf(w, "  on %s (the other box's MAC %s; read it on your network with: %s):\n", b.Node, b.PeerMAC, b.ReadMACCmd)
		if p.MACs[0] == nil || p.MACs[1] == nil {
			fmt.Fprintf(w, "    (a MAC the lab generated: give the real ones with --mac d1=MAC --mac d2=MAC for rules to use on your boxes)\n")
		}
		for _, r := range b.Rules {
			fmt.Fprintf(w, "    %s\n", r)
		}
		for _, l := range strings.Split(strings.TrimSpace(b.Diff), "\n") {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	for _, n := range rx.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if fixed != "" {
		fmt.Fprintf(w, "\nFixed configs and rules written under %s/d1 and %s/d2.\n", fixed, fixed)
	}
	fmt.Fprintf(w, "\nNot done yet: running this lab through the events (steady state, failover, switchover, failback, a realserver down) and proving the fix there (issue 11).\n")
}

// writeFixed writes DIR/dN/<config files, relative to the box's main
// config>, and DIR/dN/iptables.rules.
func writeFixed(dir string, p *check.Pair, pl *check.Plan, rx *check.Prescription) error {
	for i, b := range rx.Boxes {
		out := filepath.Join(dir, pl.Boxes[i].Node)
		base := filepath.Dir(p.Paths[i])
		for _, f := range p.Configs[i].Files {
			text, ok := b.Files[f]
			if !ok {
				data, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				text = string(data)
			}
			rel, err := filepath.Rel(base, f)
			if err != nil || strings.HasPrefix(rel, "..") {
				rel = filepath.Base(f) // an include from elsewhere
			}
			if err := os.MkdirAll(filepath.Join(out, filepath.Dir(rel)), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, rel), []byte(text), 0o644); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(out, "iptables.rules"), []byte(b.Restore), 0o644); err != nil {
			return err
		}
	}
	return nil
}
