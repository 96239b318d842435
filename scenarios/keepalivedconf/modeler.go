package keepalivedconf

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Load reads path (and its includes) into a Config.
func Load(path string) (*Config, error) {
	t, err := ParseFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Model(t.Nodes)
	if c != nil {
		c.Files, c.Includes, c.Outside = t.Files, t.Includes, t.Outside
		for i, u := range c.Unmodelled {
			if slices.Contains(t.Outside, u.Pos.File) {
				c.Unmodelled[i].Key, c.Unmodelled[i].Block = "(not shown: outside the config's directory)", ""
			}
		}
	}
	return c, t.redact(err)
}

// Model turns a syntax tree into a Config, checking each value it models.
func Model(nodes []*Node) (*Config, error) {
	m := &modeler{c: &Config{Scripts: map[string]*Script{}, ServerGroups: map[string]*ServerGroup{}}}
	for _, n := range nodes {
		m.top(n)
	}
	if m.err != nil {
		return nil, m.err
	}
	return m.c, m.resolve()
}

type modeler struct {
	c   *Config
	err error // the first
}

func (m *modeler) fail(n *Node, format string, args ...any) {
	if m.err == nil {
		m.err = Errorf(n.Pos, "%s: %s", n.Key, fmt.Sprintf(format, args...))
	}
}

func (m *modeler) unmodelled(n *Node, block string) {
	m.c.Unmodelled = append(m.c.Unmodelled, Unmodelled{Pos: n.Pos, Block: block, Key: n.Key})
}

func (m *modeler) top(n *Node) {
	switch n.Key {
	case "global_defs":
		m.global(n)
	case "vrrp_instance":
		m.instance(n)
	case "vrrp_sync_group":
		g := &SyncGroup{Pos: n.Pos, Name: m.name(n)}
		for _, c := range n.Block {
			if c.Key == "group" {
				for _, i := range c.Block {
					g.Instances = append(g.Instances, i.Key)
					g.Instances = append(g.Instances, i.Args...)
				}
				continue
			}
			m.unmodelled(c, "vrrp_sync_group "+g.Name)
		}
		m.c.SyncGroups = append(m.c.SyncGroups, g)
	case "vrrp_script":
		s := &Script{Pos: n.Pos, Name: m.name(n)}
		for _, c := range n.Block {
			switch c.Key {
			case "script":
				s.Command, s.CommandPos = strings.Join(c.Args, " "), c.Pos
			case "interval":
				s.Interval = m.seconds(c)
			case "weight":
				s.Weight = m.intIn(c, -254, 254)
			default:
				m.unmodelled(c, "vrrp_script "+s.Name)
			}
		}
		m.c.Scripts[s.Name] = s
	case "virtual_server_group":
		m.serverGroup(n)
	case "virtual_server":
		m.virtualServer(n)
	default:
		m.unmodelled(n, "")
	}
}

func (m *modeler) name(n *Node) string {
	if len(n.Args) == 0 {
		m.fail(n, "needs a name")
		return ""
	}
	return n.Args[0]
}

func (m *modeler) global(n *Node) {
	g := &m.c.Global
	for _, c := range n.Block {
		switch c.Key {
		case "router_id":
			g.RouterID = m.arg(c)
		case "vrrp_strict":
			g.VRRPStrict, g.VRRPStrictPos = true, c.Pos
		case "vrrp_version":
			g.VRRPVersion = m.intIn(c, 2, 3)
		case "lvs_sync_daemon":
			if len(c.Args) == 0 {
				m.fail(c, "needs an interface")
				continue
			}
			sd := &SyncDaemon{Pos: c.Pos, Interface: c.Args[0]}
			for i := 1; i < len(c.Args); i++ {
				switch c.Args[i] {
				case "id":
					if i+1 < len(c.Args) {
						i++
						sd.ID = m.parseInt(c, c.Args[i], 0, 255)
					}
				case "maxlen", "port", "ttl", "group":
					i++ // options lvslab runs as written
				default:
					sd.Instance = c.Args[i]
				}
			}
			g.SyncDaemon = sd
		default:
			m.unmodelled(c, "global_defs")
		}
	}
}

func (m *modeler) instance(n *Node) {
	in := &Instance{Pos: n.Pos, Name: m.name(n), Priority: 100, AdvertInt: time.Second}
	where := "vrrp_instance " + in.Name
	for _, c := range n.Block {
		switch c.Key {
		case "state":
			// keepalived knows MASTER and BACKUP, in capitals; any other
			// (master, SLAVE) is BACKUP ("unknown state 'master',
			// defaulting to BACKUP").
			in.State = "BACKUP"
			if m.arg(c) == "MASTER" {
				in.State = "MASTER"
			}
		case "interface":
			in.Interface, in.InterfacePos = m.arg(c), c.Pos
		case "virtual_router_id":
			in.VRID = m.intIn(c, 1, 255)
		case "priority":
			in.Priority, in.PriorityPos = m.intIn(c, 1, 255), c.Pos
		case "advert_int":
			in.AdvertInt = m.seconds(c)
		case "virtual_ipaddress", "virtual_ipaddress_excluded": // excluded: moves with the instance, not in its adverts
			for _, a := range c.Block {
				in.VIPs = append(in.VIPs, m.vip(a))
			}
		case "unicast_src_ip":
			in.UnicastSrc = m.addr(c, m.arg(c))
		case "mcast_src_ip":
			in.McastSrc = m.addr(c, m.arg(c))
		case "unicast_peer":
			for _, p := range c.Block {
				in.UnicastPeers = append(in.UnicastPeers, m.addr(p, p.Key))
			}
		case "nopreempt":
			in.NoPreempt = true
		case "accept":
			in.Accept = true
		case "version":
			in.Version = m.intIn(c, 2, 3)
		case "no_accept":
			in.Accept = false
		case "preempt_delay":
			in.PreemptDelay = m.secondsOrZero(c)
		case "track_script":
			for _, s := range c.Block {
				in.TrackScripts = append(in.TrackScripts, s.Key)
			}
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop":
			if in.Notify == nil {
				in.Notify, in.NotifyPos = map[string]string{}, map[string]Pos{}
			}
			in.Notify[c.Key], in.NotifyPos[c.Key] = strings.Join(c.Args, " "), c.Pos
		case "lvs_sync_daemon_interface":
			in.SyncInterface, in.SyncInterfacePos = m.arg(c), c.Pos
		case "track_interface":
			for _, t := range c.Block {
				in.TrackInterfaces = append(in.TrackInterfaces, Named{Pos: t.Pos, Name: t.Key})
			}
		default:
			m.unmodelled(c, where)
		}
	}
	keepalivedDefaults(in)
	m.c.Instances = append(m.c.Instances, in)
}

// keepalivedDefaults settles an instance as keepalived does: a MASTER
// without a priority is the address owner (255), any other 100; without
// a state, the owner is MASTER; and what each combination clears.
func keepalivedDefaults(in *Instance) {
	if in.PriorityPos.Line == 0 && in.State == "MASTER" {
		in.Priority = 255
	}
	if in.State == "" {
		in.State = "BACKUP"
		if in.Priority == 255 {
			in.State = "MASTER"
		}
	}
	if in.Priority == 255 {
		in.NoPreempt = false // "nopreempt is incompatible with priority 255"
	}
	switch {
	case in.State == "MASTER":
		// keepalived clears both ("nopreempt will not work with initial
		// state MASTER - clearing", and the same of preempt delay).
		in.NoPreempt, in.PreemptDelay = false, 0
	case in.NoPreempt:
		in.PreemptDelay = 0 // "preempt_delay is incompatible with nopreempt mode - resetting"
	}
}

func (m *modeler) vip(n *Node) VIP {
	v := VIP{Pos: n.Pos}
	s := n.Key
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() && !p.Addr().Is6() {
		m.fail(n, "not an address: %v", err)
	}
	v.Prefix = p
	for i := 0; i+1 < len(n.Args); i += 2 {
		switch n.Args[i] {
		case "dev":
			v.Dev = n.Args[i+1]
		case "label":
			v.Label = n.Args[i+1]
		}
	}
	return v
}

func (m *modeler) serverGroup(n *Node) {
	g := &ServerGroup{Pos: n.Pos, Name: m.name(n)}
	for _, c := range n.Block {
		e := GroupEntry{Pos: c.Pos}
		if c.Key == "fwmark" {
			e.Mark = uint32(m.intIn(c, 1, 1<<32-1))
		} else {
			first, last, ok := strings.Cut(c.Key, "-")
			e.First = m.addr(c, first)
			e.Last = e.First
			if ok && e.First.Is4() {
				b := e.First.As4()
				b[3] = byte(m.parseInt(c, last, int(b[3]), 255))
				e.Last = netip.AddrFrom4(b)
			}
			if len(c.Args) > 0 {
				e.Port = uint16(m.parseInt(c, c.Args[0], 0, 65535))
			}
		}
		g.Entries = append(g.Entries, e)
	}
	m.c.ServerGroups[g.Name] = g
}

func (m *modeler) virtualServer(n *Node) {
	v := &VirtualServer{Pos: n.Pos, Protocol: "UDP", LBAlgo: "wlc", LBKind: "NAT", Node: n} // keepalived's defaults
	switch {
	case len(n.Args) == 2 && n.Args[0] == "fwmark":
		v.Mark = uint32(m.parseInt(n, n.Args[1], 1, 1<<32-1))
	case len(n.Args) == 2 && n.Args[0] == "group":
		v.Group = n.Args[1]
	case len(n.Args) == 2:
		v.Addr = m.addr(n, n.Args[0])
		v.Port = uint16(m.parseInt(n, n.Args[1], 0, 65535))
	default:
		m.fail(n, "want ADDRESS PORT, fwmark N or group NAME, got %q", strings.Join(n.Args, " "))
		return
	}
	where := "virtual_server " + strings.Join(n.Args, " ")
	for _, c := range n.Block {
		switch c.Key {
		case "lb_algo", "lvs_sched":
			v.LBAlgo = m.arg(c)
		case "lb_kind", "lvs_method":
			if k := m.arg(c); slices.Contains([]string{"DR", "NAT", "TUN"}, k) {
				v.LBKind = k
			} else {
				v.LBKind, v.LBKindUnknown = "NAT", k
			}
		case "protocol":
			v.Protocol, v.ProtocolPos = strings.ToUpper(m.arg(c)), c.Pos
		case "persistence_timeout":
			v.Persistence = uint32(m.intIn(c, 0, 1<<31-1))
		case "persistence_granularity":
			v.Granularity = m.arg(c)
		case "delay_loop":
			v.DelayLoop = m.seconds(c)
		case "sorry_server":
			if len(c.Args) >= 2 {
				v.Sorry = &RealServer{Pos: c.Pos, Addr: m.addr(c, c.Args[0]), Port: uint16(m.parseInt(c, c.Args[1], 0, 65535))}
			} else {
				m.fail(c, "want ADDRESS PORT")
			}
		case "real_server":
			v.RealServers = append(v.RealServers, m.realServer(c, where))
		default:
			m.unmodelled(c, where)
		}
	}
	if v.LBKind != "NAT" && v.Mark == 0 && v.Group == "" {
		// DR and TUN cannot change the port: keepalived gives each real
		// server the virtual server's ("ports don't match - resetting").
		for _, rs := range v.RealServers {
			if rs.Port != 0 {
				rs.Port = v.Port
			}
		}
	}
	m.c.VirtualServers = append(m.c.VirtualServers, v)
}

func (m *modeler) realServer(n *Node, in string) *RealServer {
	rs := &RealServer{Pos: n.Pos, Weight: 1}
	if len(n.Args) < 1 {
		m.fail(n, "want ADDRESS [PORT]")
		return rs
	}
	rs.Addr = m.addr(n, n.Args[0])
	if len(n.Args) > 1 {
		rs.Port = uint16(m.parseInt(n, n.Args[1], 0, 65535))
	}
	where := in + " real_server " + strings.Join(n.Args, " ")
	for _, c := range n.Block {
		switch {
		case c.Key == "weight":
			rs.Weight = m.intIn(c, 0, 65535)
		case c.Key == "inhibit_on_failure":
			rs.InhibitOnFailure = true
		case slices.Contains(checkKinds, c.Key):
			rs.Checks = append(rs.Checks, m.checker(c, where))
		default:
			m.unmodelled(c, where)
		}
	}
	return rs
}

func (m *modeler) checker(n *Node, in string) *Check {
	ck := &Check{Pos: n.Pos, Kind: n.Key, Retry: -1}
	where := in + " " + n.Key
	for _, c := range n.Block {
		switch c.Key {
		case "connect_ip":
			ck.ConnectIP = m.addr(c, m.arg(c))
		case "connect_port":
			ck.ConnectPort = uint16(m.intIn(c, 1, 65535))
		case "connect_timeout":
			ck.ConnectTimeout = m.seconds(c)
		case "url":
			u := URL{}
			for _, x := range c.Block {
				switch x.Key {
				case "path":
					u.Path = m.arg(x)
				case "status_code":
					u.StatusCode = m.arg(x)
				case "digest":
					u.Digest, u.DigestPos = m.arg(x), x.Pos
				default:
					m.unmodelled(x, where+" url")
				}
			}
			ck.URLs = append(ck.URLs, u)
		case "misc_path":
			ck.MiscPath, ck.MiscPathPos = strings.Join(c.Args, " "), c.Pos
		case "misc_dynamic":
			ck.MiscDynamic = true
		case "misc_timeout":
			ck.MiscTimeout = m.seconds(c)
		case "retry", "nb_get_retry":
			ck.Retry = m.intIn(c, 0, 1000)
		case "delay_before_retry":
			ck.DelayBeforeRetry = m.secondsOrZero(c)
		default:
			m.unmodelled(c, where)
		}
	}
	return ck
}

// resolve ties the pieces together: the names one block gives another.
func (m *modeler) resolve() error {
	for _, v := range m.c.VirtualServers {
		if v.Group != "" && m.c.ServerGroups[v.Group] == nil {
			return Errorf(v.Pos, "virtual_server group %s: no virtual_server_group of that name", v.Group)
		}
	}
	return nil
}

func (m *modeler) arg(n *Node) string {
	if len(n.Args) == 0 {
		m.fail(n, "needs a value")
		return ""
	}
	return n.Args[0]
}

func (m *modeler) parseInt(n *Node, s string, lo, hi int) int {
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		m.fail(n, "want a whole number from %d to %d, got %q", lo, hi, s)
	}
	return v
}

func (m *modeler) intIn(n *Node, lo, hi int) int { return m.parseInt(n, m.arg(n), lo, hi) }

// seconds reads keepalived's times: seconds, possibly fractional.
// seconds is n's duration: above 0 (a zero advert_int, delay_loop or
// timeout is nonsense keepalived refuses or misuses), finite, at most
// 10^6; secondsOrZero allows 0 (preempt_delay).
func (m *modeler) seconds(n *Node) time.Duration { return m.duration(n, false) }

func (m *modeler) secondsOrZero(n *Node) time.Duration { return m.duration(n, true) }

func (m *modeler) duration(n *Node, zero bool) time.Duration {
	s := m.arg(n)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0 || zero && f == 0) || f > 1e6 { // !(…) also refuses NaN
		low := "above 0"
		if zero {
			low = "0 or more"
		}
		m.fail(n, "want seconds, %s and at most 1000000, got %s", low, quote(s))
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

func (m *modeler) addr(n *Node, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		m.fail(n, "not an address: %q", s)
	}
	return a
}
