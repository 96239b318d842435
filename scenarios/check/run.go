package check

import (
	"cmp"
	"crypto/md5"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// Runnable says why the lab cannot run this pair yet, or "".
func (pl *Plan) Runnable() string {
	if pl.unrunnable != "" {
		return pl.unrunnable
	}
	var first []netip.Addr
	for k, s := range pl.Services {
		if rs := s.realservers(); k == 0 {
			first = rs
		} else if !slices.Equal(rs, first) {
			return fmt.Sprintf("%s balances to %v, %s to %v: the lab runs services that balance to the same realservers", s.Key, rs, pl.Services[0].Key, first)
		}
		if s.Kind != "DR" {
			if u := s.Servers[0].LBKindUnknown; u != "" {
				return fmt.Sprintf("%s: lb_kind %s: keepalived knows DR, NAT and TUN, in capitals, and makes this service NAT (\"unknown [%s] routing method\"); the lab runs DR services: write lb_kind DR", s.Key, u, u)
			}
			return s.Key + ": lb_kind " + s.Kind + ": the lab runs DR services"
		}
		if !slices.ContainsFunc(pl.VIPs, func(p netip.Prefix) bool { return p.Addr() == s.VIP }) {
			return fmt.Sprintf("%s: %s is no vrrp_instance's virtual_ipaddress: nothing moves it between the boxes", s.Key, s.VIP)
		}
	}
	return ""
}

// Events is evs less what the pair cannot go through, with why: with
// nopreempt a restarted box does not take the VIP back, so there is no
// switchover nor failback to run.
func (pl *Plan) Events(p *Pair, evs []scenarios.Event) ([]scenarios.Event, []string) {
	var why []string
	for _, c := range p.Configs {
		for _, in := range c.Instances {
			if in.NoPreempt {
				why = append(why, fmt.Sprintf("%s: vrrp_instance %s has nopreempt: a restarted box does not take the VIP back, so %s and %s are not run",
					in.Pos, in.Name, scenarios.Switchover, scenarios.Failback))
			}
		}
	}
	skip := []scenarios.Event{scenarios.Switchover, scenarios.Failback}
	if len(why) == 0 {
		skip = nil
	}
	if n := len(pl.Boxes); n > 2 {
		var asked []string
		for _, e := range evs {
			if slices.Contains(scenarios.Adversity, e) {
				asked = append(asked, string(e))
				skip = append(skip, e)
			}
		}
		if len(asked) > 0 {
			why = append(why, fmt.Sprintf("%s: these events impair the link between the first two boxes; with %d boxes the lab does not model them yet, so they are not run", strings.Join(asked, ", "), n))
		}
	}
	if top := pl.masterPriority(p); top >= 254 {
		why = append(why, fmt.Sprintf("%s's priority is %d: no BACKUP priority (254 at most) preempts it, so %s is not run", pl.Boxes[pl.electionOrder()[0]].Node, top, scenarios.Switchover))
		skip = append(skip, scenarios.Switchover)
	}
	var out []scenarios.Event
	for _, e := range evs {
		if !slices.Contains(skip, e) {
			out = append(out, e)
		}
	}
	return out, why
}

// Workloads are the pair's virtual services as the lab runs them, each on
// its first port (Backends serves the others).
func (pl *Plan) Workloads() []scenarios.Service {
	var out []scenarios.Service
	for _, s := range pl.Services {
		out = append(out, s.backend(s.Ports[0]))
	}
	return out
}

// Backends are what the boxes serve: one server on each port of the
// services (it listens on every address); the UDP one where a UDP
// service or a DNS_CHECK has the port (it is the banner on TCP too).
func (pl *Plan) Backends() []scenarios.Service {
	var out []scenarios.Service
	for _, s := range pl.Services {
		for _, port := range s.Ports {
			b := s.backend(port)
			if s.checks(keepalivedconf.DNSCheck) { // it asks over UDP, whatever the service's protocol
				b.Backend = scenarios.BackendUDP
			}
			switch k := slices.IndexFunc(out, func(o scenarios.Service) bool { return o.Port == b.Port }); {
			case k < 0:
				out = append(out, b)
			case b.Backend == scenarios.BackendUDP:
				out[k] = b
			}
		}
	}
	return out
}

// backend is the service on port: the built-in UDP answerer for a UDP
// service; MariaDB on the MySQL port; elsewhere a built-in page over TLS where a checker or the port says HTTPS, over
// HTTP where they say HTTP, else a one-line banner.
func (s *Service) backend(port uint16) scenarios.Service {
	svc := scenarios.Service{Name: s.Key, VIP: s.VIP, Port: int(port), Backend: scenarios.BackendBanner, Master: s.Master}
	switch {
	case s.Protocol == "udp":
		svc.Backend = scenarios.BackendUDP
	case port == lab.MySQLPort:
		svc.Backend = scenarios.BackendMySQL
	case port == 25 || port == 587 || s.checks(keepalivedconf.SMTPCheck):
		svc.Backend = scenarios.BackendSMTP
	case port == 443 || s.checks(keepalivedconf.SSLGet):
		svc.Backend = scenarios.BackendHTTPS
	case port == 80 || port == 8080 || port == 8000 || s.checks(keepalivedconf.HTTPGet):
		svc.Backend = scenarios.BackendHTTP
	}
	return svc
}

// realservers are the addresses the service balances to, on either box,
// sorted.
func (s *Service) realservers() []netip.Addr {
	var out []netip.Addr
	for _, vs := range s.Servers {
		for _, rs := range vs.RealServers {
			if !slices.Contains(out, rs.Addr) {
				out = append(out, rs.Addr)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// checks reports whether a real server of the service has a checker of kind.
func (s *Service) checks(kind string) bool {
	for _, vs := range s.Servers {
		for _, rs := range vs.RealServers {
			if slices.ContainsFunc(rs.Checks, func(c *keepalivedconf.Check) bool { return c.Kind == kind }) {
				return true
			}
		}
	}
	return false
}

// Runs are the two ways lvslab check runs the pair: with its configs and
// rules as given, and with the prescription added (the configs edited,
// the new mark rules after the user's). Mappings say what the lab changed
// to run them.
func Runs(p *Pair, pl *Plan, rx *Prescription, bin string) (yours, prescribed func() scenarios.Implementation, mappings []Mapping, err error) {
	n := len(pl.Boxes)
	given, fixed, edits := make([]string, n), make([]string, n), make([]Edits, n)
	for i := range given {
		given[i], fixed[i] = p.Rules[i].Restore(), p.Rules[i].Restore(rx.Boxes[i].Drop...)
		if len(rx.Boxes[i].Rules) > 0 {
			fixed[i] += rx.Boxes[i].Restore
		}
		edits[i] = rx.Boxes[i].Edits
	}
	if yours, mappings, err = implementation(p, pl, make([]Edits, n), nil, given, bin); err != nil {
		return nil, nil, nil, err
	}
	prescribed, _, err = implementation(p, pl, edits, rx.marked, fixed, bin)
	for i, r := range p.Rules {
		if r != nil {
			mappings = append(mappings, Mapping{Box: pl.Boxes[i].Node, From: r.Path, To: fmt.Sprintf("%d mark rule(s) applied", len(r.Marks)),
				Why: "the lab applies the mangle PREROUTING MARK rules, not the rest of the file"})
		}
	}
	return yours, prescribed, mappings, err
}

// implementation is keepalived on both boxes of the lab with the pair's
// configs and edits (none, or the prescription's) and rules, unchanged
// but for the lab's mappings, which it returns: includes by absolute path
// made relative, MISC_CHECK scripts replaced by `lvslab probe` with the
// same meaning, the other commands left out or run from the scripts the
// user handed over, interfaces renamed, digests of the lab's pages, and a
// priority a switchover raises. marked are the virtual servers the edits
// declare by mark. bin is the lvslab binary.
func implementation(p *Pair, pl *Plan, edits []Edits, marked map[*keepalivedconf.VirtualServer]uint32, rules []string, bin string) (func() scenarios.Implementation, []Mapping, error) {
	var mappings []Mapping
	labEdits := make([]Edits, len(pl.Boxes))
	handed := make([]map[string][]byte, len(pl.Boxes)) // the scripts the user handed over that each box runs
	for i := range pl.Boxes {
		e := Edits{}
		if edits[i] != nil {
			e = edits[i].Clone()
		}
		handed[i] = map[string][]byte{}
		m, err := labMappings(p, pl, i, e, handed[i], bin)
		if err != nil {
			return nil, nil, err
		}
		mappings, labEdits[i] = append(mappings, m...), e
	}
	files := func(node string, priority int) (map[string]string, string, error) {
		i := pl.box(node)
		e := labEdits[i]
		// The scenario asks for a priority above the MASTER's: the
		// configs' MASTER's, which the lab's cluster does not know.
		if priority != 0 && priority != p.Configs[i].Instances[0].Priority {
			e = e.Clone()
			for _, in := range p.Configs[i].Instances {
				if err := raise(e, in, pl.SwitchoverPriority(p)); err != nil {
					return nil, "", err
				}
			}
		}
		texts, _, err := e.Apply(p.Configs[i].Files)
		if err != nil {
			return nil, "", err
		}
		out := map[string]string{}
		for f, t := range texts {
			out[labPath(p.Paths[i], f)] = t
		}
		for name, text := range handed[i] {
			out[filepath.Join(scenarios.ScriptsDir, name)] = string(text)
		}
		return out, labPath(p.Paths[i], p.Paths[i]), nil
	}
	byNode, tables, serves := map[string]string{}, map[string]int{}, map[string]map[netip.AddrPort]int{}
	for i, b := range pl.Boxes {
		byNode[b.Node] = rules[i]
		serves[b.Node] = map[netip.AddrPort]int{}
		for _, s := range pl.Services {
			for _, port := range s.Ports {
				serves[b.Node][netip.AddrPortFrom(s.VIP, port)] = len(slices.DeleteFunc(slices.Clone(s.Servers[i].RealServers),
					func(rs *keepalivedconf.RealServer) bool { return !pl.reachable(rs.Addr) }))
			}
		}
		for _, vs := range p.Configs[i].VirtualServers {
			n := ipvsServices(p.Configs[i], vs)
			if _, ok := marked[vs]; ok {
				n = 1
			}
			tables[b.Node] += pl.tabled(vs) * n
		}
	}
	impl := func() scenarios.Implementation {
		return &scenarios.UserKeepalived{Files: files, Rules: byNode, Tables: tables, Serves: serves, Timers: Timers(p)}
	}
	return impl, mappings, nil
}

// Timers are the pair's timings, as the waits of its runs follow them:
// the longest advert_int and preempt_delay of either box; and from the
// slowest checker, how long keepalived takes to take a stopped
// realserver out (the next check, delay_loop after the last, fails, and
// so do its retries, delay_before_retry apart) and to put it back (the
// next check passes), each with 10 s for the lab's load. keepalived's
// defaults where a config is silent: delay_loop 60 s, connect_timeout
// 5 s, misc_timeout the delay_loop, retry 1, delay_before_retry 1 s.
func Timers(p *Pair) scenarios.Timers {
	var t scenarios.Timers
	for _, c := range p.Configs {
		for _, in := range c.Instances {
			t.Advert, t.PreemptDelay = max(t.Advert, in.AdvertInt), max(t.PreemptDelay, in.PreemptDelay)
		}
		for _, vs := range c.VirtualServers {
			loop := cmp.Or(vs.DelayLoop, 60*time.Second)
			for _, rs := range vs.RealServers {
				for _, ck := range rs.Checks {
					timeout := cmp.Or(ck.ConnectTimeout, 5*time.Second)
					if ck.Kind == keepalivedconf.MiscCheck {
						timeout = cmp.Or(ck.MiscTimeout, loop)
					}
					retry := time.Duration(ck.Retry)
					if ck.Retry < 0 {
						retry = 1
					}
					gap := cmp.Or(ck.DelayBeforeRetry, time.Second)
					t.CheckDown = max(t.CheckDown, loop+(retry+1)*timeout+retry*gap+checkSlack)
					t.CheckUp = max(t.CheckUp, loop+timeout+checkSlack)
				}
			}
		}
	}
	return t
}

// checkSlack is what a checker's bound allows for the lab's load: two
// cores under TCG, other labs beside it.
const checkSlack = 10 * time.Second

// tabled is how many of vs's realservers keepalived keeps in each of its
// IPVS services once settled: all but the unreachable ones a checker
// takes out (inhibit_on_failure keeps them, at weight 0).
func (pl *Plan) tabled(vs *keepalivedconf.VirtualServer) int {
	n := 0
	for _, rs := range vs.RealServers {
		if pl.reachable(rs.Addr) || len(rs.Checks) == 0 || rs.InhibitOnFailure {
			n++
		}
	}
	return n
}

// SwitchoverPriority is the priority the BACKUP restarts with for a VRRP
// switchover: one above the MASTER's highest (254 at most: 255 is an
// address owner's).
func (pl *Plan) SwitchoverPriority(p *Pair) int { return min(pl.masterPriority(p)+1, 254) }

// masterPriority is the highest priority of the boxes' instances: what
// a BACKUP's must exceed to take every VIP (in an active-active pair,
// each box is the MASTER of some).
func (pl *Plan) masterPriority(p *Pair) int {
	top := 0
	for _, c := range p.Configs {
		for _, in := range c.Instances {
			top = max(top, in.Priority)
		}
	}
	return top
}

// raise edits instance in's priority to priority (a switchover).
func raise(e Edits, in *keepalivedconf.Instance, priority int) error {
	if in.PriorityPos.Line != 0 {
		text, err := lineOf(in.PriorityPos)
		if err != nil {
			return err
		}
		e.set(in.PriorityPos, indentOf(text)+fmt.Sprintf("priority %d", priority))
		return nil
	}
	text, err := lineOf(in.Pos)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(strings.TrimSpace(text), "{") {
		return fmt.Errorf("%s: vrrp_instance %s has no priority line to raise for the switchover: add one", in.Pos, in.Name)
	}
	e.set(in.Pos, text+fmt.Sprintf("\n    priority %d", priority))
	return nil
}

// labPath is where config file f of the config whose main file is main
// goes in the box's run directory: at the same place relative to main, or
// under _abs/ when it lies outside main's directory.
func labPath(main, f string) string {
	rel, err := filepath.Rel(filepath.Dir(main), f)
	if err != nil || strings.HasPrefix(rel, "..") {
		abs, _ := filepath.Abs(f)
		return filepath.Join("_abs", abs)
	}
	return rel
}

func indentOf(s string) string { return s[:len(s)-len(strings.TrimLeft(s, " \t"))] }

// labMappings adds to e what box i's configs need to run in the lab, and
// lists it.
func labMappings(p *Pair, pl *Plan, i int, e Edits, handed map[string][]byte, bin string) ([]Mapping, error) {
	var out []Mapping
	node, main := pl.Boxes[i].Node, p.Paths[i]
	for _, inc := range p.Configs[i].Includes {
		if !filepath.IsAbs(inc.Pattern) {
			continue
		}
		from := filepath.Dir(labPath(main, inc.Pos.File))
		rel, err := filepath.Rel(from, labPath(main, inc.Resolved))
		if err != nil {
			return nil, err
		}
		text, err := lineOf(inc.Pos)
		if err != nil {
			return nil, err
		}
		e.set(inc.Pos, strings.Replace(text, inc.Pattern, rel, 1))
		out = append(out, Mapping{Box: node, From: "include " + inc.Pattern, To: "include " + rel,
			Why: inc.Pos.String() + ": the files are copied into the lab's run directory"})
	}
	for _, vs := range p.Configs[i].VirtualServers {
		for _, rs := range vs.RealServers {
			for _, ck := range rs.Checks {
				if ck.Kind != keepalivedconf.MiscCheck || ck.MiscPathPos.Line == 0 {
					continue
				}
				addr, port := rs.Addr, rs.Port
				if ck.ConnectIP.IsValid() {
					addr = ck.ConnectIP
				}
				if k := slices.IndexFunc(pl.Services, func(s *Service) bool { return s.Servers[i] == vs }); port == 0 && k >= 0 {
					port = pl.Services[k].Ports[0]
				}
				kind := "tcp"
				if port == lab.MySQLPort {
					kind = "mysql-ping"
				}
				probe := fmt.Sprintf("%s probe %s %s %d", bin, kind, addr, port)
				text, err := lineOf(ck.MiscPathPos)
				if err != nil {
					return nil, err
				}
				e.set(ck.MiscPathPos, fmt.Sprintf("%smisc_path %q", indentOf(text), probe))
				out = append(out, Mapping{Box: node, From: "misc_path " + ck.MiscPath, To: "lvslab probe " + kind + fmt.Sprintf(" %s %d", addr, port),
					Why: ck.MiscPathPos.String() + ": the lab runs no script a config names (" + scriptPath(ck.MiscPath) + "); a check with the same meaning stands in"})
			}
		}
	}
	// Where the config names an interface the lab's box does not have,
	// the box's one (listed by Derive).
	for _, n := range interfaces(p.Configs[i]) {
		if n.Name == pl.Boxes[i].LabInterface {
			continue
		}
		text, err := e.current(n.Pos)
		if err != nil {
			return nil, err
		}
		word := regexp.MustCompile(`(^|[\s"'])` + regexp.QuoteMeta(n.Name) + `($|[\s"'])`)
		e.set(n.Pos, word.ReplaceAllString(text, "${1}"+pl.Boxes[i].LabInterface+"${2}"))
	}
	digests, err := pl.digests(p.Configs[i], node, e)
	if err != nil {
		return nil, err
	}
	out = append(out, digests...)
	scripts, err := pl.commands(p, i, e, handed)
	if err != nil {
		return nil, err
	}
	out = append(out, scripts...)
	return out, nil
}

// comment makes the line at pos a comment in the lab's copy.
func (e Edits) comment(pos keepalivedconf.Pos) error {
	text, err := lineOf(pos)
	if err != nil {
		return err
	}
	if strings.ContainsAny(text, "{}") {
		return keepalivedconf.Errorf(pos, "a line with a script and a brace: lvslab leaves the script out of the lab, so put it on a line of its own")
	}
	e.set(pos, "# "+text)
	return nil
}

// digests writes into e, for each url of an HTTP_GET or SSL_GET checker
// of c that has a digest, the digest of the page the lab's backend on
// that realserver serves ("server_id N"), and lists them: the lab's
// pages are not the user's.
func (pl *Plan) digests(c *keepalivedconf.Config, node string, e Edits) ([]Mapping, error) {
	var out []Mapping
	for _, vs := range c.VirtualServers {
		for _, rs := range vs.RealServers {
			for _, ck := range rs.Checks {
				for _, u := range ck.URLs {
					if u.Digest == "" {
						continue
					}
					text, err := lineOf(u.DigestPos)
					if err != nil {
						return nil, err
					}
					if len(strings.Fields(text)) != 2 {
						return nil, keepalivedconf.Errorf(u.DigestPos, "digest shares its line with more: put it on a line of its own")
					}
					id := pl.serverID(rs.Addr)
					sum := fmt.Sprintf("%x", md5.Sum([]byte(scenarios.BackendAnswer(id))))
					e.set(u.DigestPos, indentOf(text)+"digest "+sum)
					out = append(out, Mapping{Box: node, From: "digest " + u.Digest, To: sum,
						Why: fmt.Sprintf("%s: the MD5 of the page the lab's backend on %s serves (server_id %d), not of yours", u.DigestPos, rs.Addr, id)})
				}
			}
		}
	}
	return out, nil
}

// serverID is the server_id the lab gives the node with address a (its
// place in the topology), or 0 if no node has it.
func (pl *Plan) serverID(a netip.Addr) int {
	for k, n := range pl.Topology.Nodes {
		for _, ifc := range n.Interfaces {
			for _, addr := range ifc.Addresses {
				if p, err := netip.ParsePrefix(addr); err == nil && p.Addr() == a {
					return cmp.Or(n.ServerID, k+1)
				}
			}
		}
	}
	return 0
}
