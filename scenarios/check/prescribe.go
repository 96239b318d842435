package check

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// Prescription is the fix for a pair: per box, the mangle rules and the
// edited config files; and what it could not fix, with why.
type Prescription struct {
	Boxes []BoxFix `json:"boxes"`
	// Notes say where the fwmark guard does not fit and what to do.
	Notes []string `json:"notes,omitempty"`
	// Quiet are the services that need no guard, and why.
	Quiet []string `json:"quiet,omitempty"`
	// Unserved says why the configs as given serve no connection at
	// all, where the plan can tell (vrrp_strict with no accept); "".
	Unserved string `json:"unserved,omitempty"`
	// marked are the virtual servers (of either box) the fix declares by
	// a mark instead: one IPVS service each, where a group made several.
	marked map[*keepalivedconf.VirtualServer]uint32
}

// Nothing reports whether there is nothing to fix: no rule to add, no
// rule or service to change.
func (rx *Prescription) Nothing() bool {
	return len(rx.Notes) == 0 && !slices.ContainsFunc(rx.Boxes, func(b BoxFix) bool { return len(b.Rules) > 0 })
}

// BoxFix is one box's share of the fix.
type BoxFix struct {
	Node string `json:"node"`
	// Rules are iptables commands: -D for each rule of the user's the
	// guard replaces (at Drop in their rules file), then -A for each
	// guarded service and port.
	Rules []string             `json:"rules"`
	Drop  []keepalivedconf.Pos `json:"drop,omitempty"`
	// Restore is the same as iptables-restore input (*mangle ... COMMIT).
	Restore string `json:"restore"`
	// Edits are the changes to the box's config files, Files every file
	// as fixed (path -> text) and Diff the changed lines.
	Edits Edits             `json:"-"`
	Files map[string]string `json:"-"`
	Diff  string            `json:"diff"`
	// PeerMACs are the MACs the guard excludes (the other boxes'), and
	// ReadMACCmd how to read them there.
	PeerMACs   []string `json:"peer_macs"`
	ReadMACCmd string   `json:"read_mac"`
}

// firstMark is where new marks start: the seed's fix used 3 and 4.
const firstMark = 3

// Prescribe writes the fwmark guard for the pair: each box marks a
// service's VIP traffic unless another box sent it, and declares the
// service by its own mark.
func Prescribe(p *Pair, pl *Plan) (*Prescription, error) {
	rx := &Prescription{marked: map[*keepalivedconf.VirtualServer]uint32{}}
	used := usedMarks(p)
	next := uint32(firstMark)
	mark := func() uint32 {
		for slices.Contains(used, next) {
			next++
		}
		used = append(used, next)
		return next
	}
	edits := make([]Edits, len(pl.Boxes))
	rx.Boxes = make([]BoxFix, len(pl.Boxes))
	for i := range rx.Boxes {
		edits[i] = Edits{}
		var cmds []string
		for _, peer := range pl.peers(i) {
			cmds = append(cmds, "ip neigh show "+peer.Addr.String())
		}
		rx.Boxes[i] = BoxFix{Node: pl.Boxes[i].Node, PeerMACs: pl.peerMACs(i),
			ReadMACCmd: fmt.Sprintf("%s   # on %s: the MAC after lladdr (ping it first if the entry is missing)", strings.Join(cmds, "; "), pl.Boxes[i].Node)}
	}
	for _, s := range pl.Services {
		if err := rx.service(p, pl, s, edits, mark); err != nil {
			return nil, err
		}
	}
	for i, c := range p.Configs {
		if err := rx.strict(c, pl.Boxes[i].Node, edits[i]); err != nil {
			return nil, err
		}
		if err := rx.scriptFixes(p, i, pl.Boxes[i].Node, edits[i]); err != nil {
			return nil, err
		}
	}
	for i := range rx.Boxes {
		b := &rx.Boxes[i]
		b.Restore = restore(b.Rules)
		var err error
		b.Edits = edits[i]
		if b.Files, b.Diff, err = edits[i].Apply(p.Configs[i].Files); err != nil {
			return nil, err
		}
	}
	return rx, nil
}

// service writes the guard of one of the plan's services: nothing where
// no loop can start or it is not DR; where the boxes mark it already,
// their unguarded mark rules replaced; else a new mark, the guard rules
// and the virtual_server declared by it.
func (rx *Prescription) service(p *Pair, pl *Plan, s *Service, edits []Edits, mark func() uint32) error {
	if s.Kind != "DR" {
		kind := s.Kind
		if u := s.Servers[0].LBKindUnknown; u != "" {
			kind = fmt.Sprintf("%s (keepalived makes it NAT: it knows DR, NAT and TUN in capitals)", u)
		}
		rx.Notes = append(rx.Notes, fmt.Sprintf("%s: lb_kind %s, not DR: the ping-pong loop is a DR problem (the other box gets the client's packet unchanged); no guard written", s.Key, kind))
		return nil
	}
	if why := s.noLoop(pl); why != "" {
		rx.Quiet = append(rx.Quiet, fmt.Sprintf("%s: %s: no ping-pong loop can start, no guard written", s.Key, why))
		if s.KeepalivedUDP {
			if err := rx.protocolTCP(pl, s, edits); err != nil {
				return err
			}
		}
		return nil
	}
	if s.Marks[0] != 0 {
		rx.Notes = append(rx.Notes, checkMarkRules(p, pl, s)...)
		// Where a box's rules set the mark on the other box's traffic
		// too, or not at all, its guard replaces them.
		for i := range rx.Boxes {
			if p.Rules[i] == nil {
				continue
			}
			setting := p.Rules[i].Setting(s.Marks[i])
			unguarded := slices.DeleteFunc(slices.Clone(setting), func(r MarkRule) bool { return r.guards(pl.peerMACs(i)) })
			if len(setting) > 0 && len(unguarded) == 0 {
				continue
			}
			b := &rx.Boxes[i]
			for _, r := range unguarded {
				b.Drop = append(b.Drop, r.Pos)
				b.Rules = append(b.Rules, r.Delete())
			}
			for _, port := range s.Ports {
				b.Rules = append(b.Rules, guardRules(s.VIP, s.Protocol, port, pl.peerMACs(i), s.Marks[i])...)
			}
		}
		return nil
	}
	// One mark for every box (the seed's fix used 3 and 4; the mark
	// is each box's own, so either works): a services file the
	// configs share stays one file. The services of one group are one
	// virtual_server: one mark, declared once.
	m, declared := rx.marked[s.Servers[0]]
	if !declared {
		m = mark()
		for _, vs := range s.Servers {
			rx.marked[vs] = m
		}
	}
	if s.KeepalivedUDP {
		rx.Notes = append(rx.Notes, fmt.Sprintf("%s (%s): no protocol, so keepalived made it a UDP service and balanced no TCP connection; declared by fwmark %d, it balances what the guard marks: TCP to port %v",
			s.Key, s.Servers[0].Pos, m, s.Ports))
	}
	for i := range rx.Boxes {
		for _, port := range s.Ports {
			rx.Boxes[i].Rules = append(rx.Boxes[i].Rules, guardRules(s.VIP, s.Protocol, port, pl.peerMACs(i), m)...)
		}
		if declared {
			continue
		}
		if err := edits[i].toFwmark(s.Servers[i], m, s.Ports[0]); err != nil {
			return err
		}
	}
	return nil
}

// protocolTCP adds `protocol TCP` to each box's virtual_server of s,
// which gives none: keepalived makes such a service UDP. Where no box
// serves it too, the MASTER refuses every TCP connection: the runs as
// given are UNSERVED, as the plan says.
func (rx *Prescription) protocolTCP(pl *Plan, s *Service, edits []Edits) error {
	for i, vs := range s.Servers {
		head, err := edits[i].current(vs.Pos)
		if err != nil {
			return err
		}
		indent := head[:len(head)-len(strings.TrimLeft(head, " \t"))]
		edits[i].set(vs.Pos, head+"\n"+indent+"    protocol TCP")
	}
	rx.Notes = append(rx.Notes, fmt.Sprintf("%s (%s): no protocol, so keepalived makes it a UDP service and balances no TCP connection; the fix adds protocol TCP", s.Key, s.Servers[0].Pos))
	if rx.Unserved == "" && !slices.ContainsFunc(pl.Boxes, func(b Box) bool { return slices.Contains(s.realservers(), b.Addr) }) {
		rx.Unserved = fmt.Sprintf("%s (%s) gives no protocol: keepalived makes it UDP, so the MASTER takes the clients' TCP connections to %s itself, and serves none", s.Key, s.Servers[0].Pos, s.VIP)
	}
	return nil
}

// noLoop says why the service cannot loop between the boxes, or "". A
// loop needs a box's table to send to another box whose table (loaded,
// as keepalived keeps it) sends on: the MASTER forwards a client's
// packet to a BACKUP, which balances it back, or to a third box. Ordinary
// DR, whose directors are not realservers, never forwards to a director.
func (s *Service) noLoop(pl *Plan) string {
	sendsTo := func(i, j int) bool {
		return slices.ContainsFunc(s.Servers[i].RealServers, func(rs *keepalivedconf.RealServer) bool { return rs.Addr == pl.Boxes[j].Addr })
	}
	// i sends to j, and j on to k: k may be i (the pair's bounce) or a
	// third box.
	for i := range pl.Boxes {
		for j := range pl.Boxes {
			for k := range pl.Boxes {
				if i != j && j != k && sendsTo(i, j) && sendsTo(j, k) {
					return ""
				}
			}
		}
	}
	if len(pl.Boxes) == 2 {
		for i := range pl.Boxes {
			if other := pl.Boxes[1-i]; !sendsTo(i, 1-i) {
				return fmt.Sprintf("%s's service does not balance to %s (%s)", pl.Boxes[i].Node, other.Node, other.Addr)
			}
		}
	}
	return "no box's service balances to another box whose service balances on"
}

// peers are the boxes but box i.
func (pl *Plan) peers(i int) []Box { return slices.Concat(pl.Boxes[:i], pl.Boxes[i+1:]) }

// peerMACs are the MACs of the boxes but box i: what its guard excludes.
func (pl *Plan) peerMACs(i int) []string {
	var out []string
	for _, b := range pl.peers(i) {
		out = append(out, b.MAC)
	}
	return out
}

// guardRule is the fwmark guard for one port, as an iptables command:
// mark VIP traffic unless another box (peerMACs) sent it; the director's
// own rule (director.Guard), over the whole mark.
func guardRules(vip netip.Addr, proto string, port uint16, peerMACs []string, mark uint32) []string {
	g := director.Guard{VIP: vip, Port: port, Protocol: proto, Mark: mark}
	for _, m := range peerMACs {
		mac, _ := net.ParseMAC(m) // the plan's, valid
		g.PeerMACs = append(g.PeerMACs, mac)
	}
	rules := []string{"iptables -t mangle -A PREROUTING " + strings.Join(g.Rule(), " ")}
	for _, r := range g.Redirects() {
		rules = append(rules, natRule+strings.Join(r, " "))
	}
	return rules
}

// natRule begins the rules beside each guard that close the crash hole:
// the VIP traffic another director forwards goes to the box's own
// sockets in nat PREROUTING, so IPVS never looks it up in an entry a
// killed MASTER left (Findings: with the guard alone, 150 of 300 reused
// ports failed after a MASTER's SIGKILL; with these, 0 of 300).
const natRule = "iptables -t nat -A PREROUTING "

// CrashHoleWhy says why the prescription REDIRECTs beside each guard.
const CrashHoleWhy = "each -j REDIRECT sends the VIP traffic the other director forwards to this box's own service before IPVS " +
	"looks it up: after a MASTER's crash its connection entries would send such traffic back past the guard (a connection-table " +
	"hit wins over the mark; docs/findings.md, \"A SIGKILLed MASTER's connection entries...\")"

// Guards are the guard's rules among rules (mangle MARK), without the
// REDIRECTs beside them.
func Guards(rules []string) []string {
	return slices.DeleteFunc(slices.Clone(rules), func(r string) bool { return strings.HasPrefix(r, natRule) })
}

// restore is iptables-restore input for rules: a section per table, the
// user's rules a guard replaces as comments to delete first.
func restore(rules []string) string {
	var out strings.Builder
	for _, table := range []string{"mangle", "nat"} {
		prefix := "iptables -t " + table + " "
		var lines []string
		for _, r := range rules {
			switch {
			case strings.HasPrefix(r, prefix+"-D "):
				lines = append(lines, "# first, on the box: "+r)
			case strings.HasPrefix(r, prefix):
				lines = append(lines, strings.TrimPrefix(r, prefix))
			}
		}
		if table == "nat" && len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&out, "*%s\n:PREROUTING ACCEPT [0:0]\n", table)
		for _, l := range lines {
			out.WriteString(l + "\n")
		}
		out.WriteString("COMMIT\n")
	}
	return out.String()
}

// usedMarks are the marks the configs' fwmark services and the rules use.
func usedMarks(p *Pair) []uint32 {
	var used []uint32
	for i, c := range p.Configs {
		for _, vs := range c.VirtualServers {
			used = append(used, vs.Mark)
		}
		if p.Rules[i] != nil {
			for _, r := range p.Rules[i].Marks {
				used = append(used, r.Mark)
			}
		}
	}
	return used
}

// checkMarkRules: a service already declared by mark is guarded only if
// each box's rules for its mark exclude the other boxes' MACs.
func checkMarkRules(p *Pair, pl *Plan, s *Service) []string {
	var notes []string
	for i := range pl.Boxes {
		var named []string
		for _, peer := range pl.peers(i) {
			named = append(named, peer.Node+"'s MAC "+peer.MAC)
		}
		if p.Rules[i] == nil {
			notes = append(notes, fmt.Sprintf("%s on %s: declared by fwmark %d, but no rules were given (--iptables) to check that they exclude %s",
				s.Key, pl.Boxes[i].Node, s.Marks[i], strings.Join(named, " and ")))
			continue
		}
		if len(p.Rules[i].Setting(s.Marks[i])) == 0 {
			notes = append(notes, fmt.Sprintf("%s on %s: declared by fwmark %d, but no rule of %s sets that mark: the service gets no traffic; the fix adds the guard rule that sets it",
				s.Key, pl.Boxes[i].Node, s.Marks[i], p.Rules[i].Path))
		}
		for _, r := range p.Rules[i].Setting(s.Marks[i]) {
			if !r.guards(pl.peerMACs(i)) {
				var nodes, guard []string
				for _, peer := range pl.peers(i) {
					nodes, guard = append(nodes, peer.Node), append(guard, "-m mac ! --mac-source "+peer.MAC)
				}
				notes = append(notes, fmt.Sprintf("%s: %q marks traffic %s forwards too: the fix deletes it and adds the guard (%s)",
					r.Pos, r.Text, strings.Join(nodes, " or "), strings.Join(guard, " ")))
			}
		}
	}
	return notes
}

// Edits are line replacements to config files, keyed by file and 1-based
// line of the original; "" deletes the line, a text with newlines adds
// lines.
type Edits map[string]map[int]string

func (e Edits) set(pos keepalivedconf.Pos, text string) {
	if e[pos.File] == nil {
		e[pos.File] = map[int]string{}
	}
	e[pos.File][pos.Line] = text
}

// edited reports whether an edit changed the line at pos already.
func (e Edits) edited(pos keepalivedconf.Pos) bool {
	_, ok := e[pos.File][pos.Line]
	return ok
}

// current is the line at pos as the edits so far leave it.
func (e Edits) current(pos keepalivedconf.Pos) (string, error) {
	if text, ok := e[pos.File][pos.Line]; ok {
		return text, nil
	}
	return lineOf(pos)
}

// Clone returns a copy to add edits to.
func (e Edits) Clone() Edits {
	c := Edits{}
	for f, lines := range e {
		for l, t := range lines {
			c.set(keepalivedconf.Pos{File: f, Line: l}, t)
		}
	}
	return c
}

var (
	vsHead = regexp.MustCompile(`virtual_server\s+\S+\s+\S+`)
	rsHead = regexp.MustCompile(`(real_server\s+\S+)\s+[^\s{]+`)
)

// portCheckers connect to the real server's port: once the port goes
// from real_server (a fwmark service has none), they need connect_port.
var portCheckers = []string{keepalivedconf.TCPCheck, keepalivedconf.HTTPGet, keepalivedconf.SSLGet, keepalivedconf.SMTPCheck, keepalivedconf.DNSCheck}

// toFwmark rewrites virtual server vs to be declared by mark: the same
// body, less what keepalived drops from a fwmark service (its protocol,
// its real servers' ports), with connect_port where a checker used the
// real server's port.
func (e Edits) toFwmark(vs *keepalivedconf.VirtualServer, mark uint32, port uint16) error {
	text, err := lineOf(vs.Pos)
	if err != nil {
		return err
	}
	e.set(vs.Pos, vsHead.ReplaceAllString(text, fmt.Sprintf("virtual_server fwmark %d", mark)))
	for _, n := range vs.Node.Block {
		switch n.Key {
		case "protocol":
			text, err := lineOf(n.Pos)
			if err != nil {
				return err
			}
			if len(strings.Fields(text)) != 2 {
				return fmt.Errorf("%s: protocol shares its line with more: edit it by hand", n.Pos)
			}
			e.set(n.Pos, "")
		case "real_server":
			text, err := lineOf(n.Pos)
			if err != nil {
				return err
			}
			if fixed := rsHead.ReplaceAllString(text, "$1"); fixed != text { // a port to drop
				e.set(n.Pos, fixed)
			}
		}
	}
	for _, rs := range vs.RealServers {
		for _, ck := range rs.Checks {
			if ck.ConnectPort != 0 || !slices.Contains(portCheckers, ck.Kind) {
				continue
			}
			p := rs.Port
			if p == 0 {
				p = port
			}
			text, err := lineOf(ck.Pos)
			if err != nil {
				return err
			}
			head, rest, _ := strings.Cut(text, "{")
			indent := text[:len(text)-len(strings.TrimLeft(text, " \t"))]
			if strings.TrimSpace(rest) == "" {
				e.set(ck.Pos, fmt.Sprintf("%s{\n%s    connect_port %d", head, indent, p))
			} else {
				e.set(ck.Pos, fmt.Sprintf("%s{ connect_port %d%s", head, p, rest))
			}
		}
	}
	return nil
}

// lineOf is the line at pos of its file.
func lineOf(pos keepalivedconf.Pos) (string, error) {
	lines, err := linesOf(pos.File)
	if err != nil {
		return "", err
	}
	if pos.Line < 1 || pos.Line > len(lines) {
		return "", fmt.Errorf("%s: no such line", pos)
	}
	return lines[pos.Line-1], nil
}

// sources are the files planning has read, by path: it edits many lines
// of a file (one per virtual_server) and reads the file once.
var sources = struct {
	sync.Mutex
	files map[string]source
}{files: map[string]source{}}

type source struct {
	size  int64
	mtime time.Time
	lines []string
}

// linesOf is file's lines, read once while the file stays as it was.
func linesOf(file string) ([]string, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	sources.Lock()
	defer sources.Unlock()
	if s, ok := sources.files[file]; ok && s.size == st.Size() && s.mtime.Equal(st.ModTime()) {
		return s.lines, nil
	}
	data, err := keepalivedconf.ReadFile(file, keepalivedconf.MaxFileBytes)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	sources.files[file] = source{st.Size(), st.ModTime(), lines}
	return lines, nil
}

// Apply returns the text of every one of files with the edits, and a
// unified-style diff of the lines changed.
func (e Edits) Apply(files []string) (map[string]string, string, error) {
	out := map[string]string{}
	var diff strings.Builder
	for _, f := range files {
		orig, err := linesOf(f)
		if err != nil {
			return nil, "", err
		}
		if e[f] == nil {
			out[f] = strings.Join(orig, "\n")
			continue
		}
		var lines []string
		fmt.Fprintf(&diff, "--- %s\n+++ %s (fixed)\n", f, f)
		for k, l := range orig {
			repl, ok := e[f][k+1]
			if !ok {
				lines = append(lines, l)
				continue
			}
			fmt.Fprintf(&diff, "@@ line %d @@\n-%s\n", k+1, l)
			if repl != "" {
				lines = append(lines, repl)
				for _, r := range strings.Split(repl, "\n") {
					fmt.Fprintf(&diff, "+%s\n", r)
				}
			}
		}
		out[f] = strings.Join(lines, "\n")
	}
	return out, diff.String(), nil
}

// strict removes vrrp_strict from c's global_defs where an instance
// lacks accept, or runs VRRP version 2 (where keepalived resets accept):
// strict mode turns RFC 5798's Accept_Mode off, and
// keepalived then adds filter rules that drop every packet to the VIPs on
// the box that holds them, so nothing reaches IPVS (the sample
// keepalived.conf of RHEL-like packages has vrrp_strict). accept does
// not undo it under VRRP version 2, keepalived's default: keepalived
// resets it (Findings).
func (rx *Prescription) strict(c *keepalivedconf.Config, node string, e Edits) error {
	names := c.StrictDrops()
	if len(names) == 0 {
		return nil
	}
	if err := e.comment(c.Global.VRRPStrictPos); err != nil {
		return err
	}
	why := fmt.Sprintf("%s: vrrp_strict, and vrrp_instance %s without accept (or with it, under VRRP version 2): keepalived then drops every packet to the VIPs on the box that holds them, so no connection reaches IPVS",
		c.Global.VRRPStrictPos, strings.Join(names, ", "))
	rx.Notes = append(rx.Notes, fmt.Sprintf("on %s: %s; the fix removes vrrp_strict (accept alone does not do: keepalived resets it under VRRP version 2)", node, why))
	if rx.Unserved == "" {
		rx.Unserved = why
	}
	return nil
}
