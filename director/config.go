package director

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/lab/yamlcheck"
)

// Config is a director's configuration as plain data: what
// fixtures/director/*.yaml decode into. ParseConfig validates it.
type Config struct {
	VRRP     VRRPConfig      `yaml:"vrrp"`
	Services []ServiceConfig `yaml:"services"`
	Guard    GuardConfig     `yaml:"guard"`
	Status   StatusConfig    `yaml:"status,omitempty"`
}

// StatusConfig is where the director reports: `lvslab director status`
// reads the unix socket; Prometheus scrapes the optional metrics address.
type StatusConfig struct {
	Socket string `yaml:"socket,omitempty"` // default DefaultStatusSocket
	// Metrics is a loopback host:port for /metrics; empty for none.
	Metrics string `yaml:"metrics,omitempty"`
}

// DefaultStatusSocket is the status socket when the config names none.
const DefaultStatusSocket = "/run/lvslab-director/director.sock"

// VRRPConfig is the VRRPv3 instance (RFC 5798) that decides who is MASTER.
type VRRPConfig struct {
	Interface    string        `yaml:"interface"`
	VRID         int           `yaml:"vrid"`
	Priority     int           `yaml:"priority"`
	AdvertInt    time.Duration `yaml:"advert_int"`
	Preempt      *bool         `yaml:"preempt,omitempty"` // default true
	PreemptDelay time.Duration `yaml:"preempt_delay,omitempty"`
	UnicastPeer  IPv4          `yaml:"unicast_peer,omitempty"`
	// GARPRefresh, when set, re-announces the VIPs with gratuitous ARP
	// this often while MASTER (keepalived's vrrp_garp_master_refresh):
	// clients that a BACKUP's brief takeover (a split brain) drew away
	// come back within it, even when the BACKUP yielded unheard.
	GARPRefresh time.Duration `yaml:"garp_refresh,omitempty"`
}

// ServiceConfig is one virtual service and its realservers.
type ServiceConfig struct {
	Name        string             `yaml:"name"`
	VIP         IPv4               `yaml:"vip"`
	Port        int                `yaml:"port"`
	Protocol    string             `yaml:"protocol,omitempty"` // tcp (default) or udp
	Scheduler   string             `yaml:"scheduler,omitempty"`
	Forward     string             `yaml:"forward,omitempty"` // dr (default), nat, tun
	Persistence time.Duration      `yaml:"persistence,omitempty"`
	Realservers []RealserverConfig `yaml:"realservers"`
}

// RealserverConfig is a backend and its health check.
type RealserverConfig struct {
	Address IPv4        `yaml:"address"`
	Port    int         `yaml:"port,omitempty"` // default: the service's
	Weight  *int        `yaml:"weight,omitempty"`
	Check   CheckConfig `yaml:"check,omitempty"`
}

// CheckConfig is a health check: tcp connect, mysql-ping, or mysql-replica
// (replication threads running and lag <= max_lag, as the seed's
// check_slave.pl does).
type CheckConfig struct {
	Type     string        `yaml:"type,omitempty"`
	Interval time.Duration `yaml:"interval,omitempty"`
	Timeout  time.Duration `yaml:"timeout,omitempty"`
	Rise     int           `yaml:"rise,omitempty"`
	Fall     int           `yaml:"fall,omitempty"`
	MaxLag   time.Duration `yaml:"max_lag,omitempty"` // mysql-replica; default 1m
	// User and Password log the mysql checks in.
	User     string `yaml:"user,omitempty"`
	Password string `yaml:"password,omitempty"`
	// OnFail: quiesce (weight 0, default) or remove.
	OnFail string `yaml:"on_fail,omitempty"`
}

// GuardConfig chooses the loop guard.
type GuardConfig struct {
	// Mode: fwmark (default), backup-only, or none (reproduces the bug).
	Mode string `yaml:"mode,omitempty"`
	Mark uint32 `yaml:"mark,omitempty"`
	// Mask is the mark bits the guard sets (--set-xmark mark/mask); the
	// packet's other bits stay as other software set them. Default: the
	// bits up to the mark's highest (0x3 for mark 3). IPVS matches a
	// fwmark service against the whole mark, so a packet someone else
	// marked too is served locally, not balanced.
	Mask uint32 `yaml:"mask,omitempty"`
	// PeerMAC is the other director's MAC; learned from its VRRP adverts
	// when empty.
	PeerMAC MAC `yaml:"peer_mac,omitempty"`
	// RedirectPeer (mode fwmark, default true) also REDIRECTs, in nat
	// PREROUTING, the VIP traffic the peer forwards to this box's own
	// sockets: a connection entry a killed MASTER left in its IPVS table
	// can then not send a reused client port back (the crash hole, see
	// Findings). It costs conntrack and NAT for that traffic, which
	// reaches the service at the box's own address.
	RedirectPeer *bool `yaml:"redirect_peer,omitempty"`
}

// Guard modes.
const (
	GuardFwmark     = "fwmark"
	GuardBackupOnly = "backup-only"
	GuardNone       = "none"
)

// Schedulers Linux IPVS provides (ip_vs_*.ko); a kernel may lack some,
// which the kernel reports when the service is added.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

const (
	// maxWeight is the largest realserver weight ipvsadm accepts; the
	// kernel's field is 32 bits, and a larger YAML number wrapped.
	maxWeight = 65535
	// minCheckInterval bounds how often a realserver is probed: 1ns once
	// kept a director at 1.7 vCPUs.
	minCheckInterval = 100 * time.Millisecond
)

var (
	forwards   = map[string]string{"dr": Route, "nat": Masq, "tun": Tunnel}
	checkTypes = []string{"tcp", "mysql-ping", "mysql-replica"}
)

// ParseConfigFile reads and validates a director config.
func ParseConfigFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes YAML strictly, fills defaults and validates; errors
// name file:line and the field.
func ParseConfig(file string, data []byte) (*Config, error) {
	var c Config
	if err := yamlcheck.Decode(file, data, &c, c.validate); err != nil {
		return nil, err
	}
	return &c, nil
}

type checker struct{ errs yamlcheck.ValidationError }

func (k *checker) fail(path, format string, a ...any) {
	k.errs = append(k.errs, &yamlcheck.FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
}

// validate fills defaults and checks every field.
func (c *Config) validate() error {
	k := &checker{}
	c.VRRP.validate(k)
	if len(c.Services) == 0 {
		k.fail("services", "at least one service is required")
	}
	seen := map[string]string{}
	for i := range c.Services {
		c.Services[i].validate(k, fmt.Sprintf("services[%d]", i), seen)
	}
	c.Guard.validate(k, len(c.Services))
	if c.Status.Socket == "" {
		c.Status.Socket = DefaultStatusSocket
	}
	if err := checkSocketPath(c.Status.Socket); err != nil {
		k.fail("status.socket", "%v", err)
	}
	if m := c.Status.Metrics; m != "" {
		if ap, err := netip.ParseAddrPort(m); err != nil || !ap.Addr().IsLoopback() {
			k.fail("status.metrics", "metrics address %q: want a loopback host:port, such as 127.0.0.1:9101", m)
		}
	}
	if len(k.errs) > 0 {
		return k.errs
	}
	return nil
}

func (v *VRRPConfig) validate(k *checker) {
	switch {
	case v.Interface == "":
		k.fail("vrrp.interface", "interface is required")
	case len(v.Interface) > 15:
		k.fail("vrrp.interface", "interface name %q is longer than 15", v.Interface)
	}
	if v.VRID < 1 || v.VRID > 255 {
		k.fail("vrrp.vrid", "vrid %d: want 1-255", v.VRID)
	}
	if v.Priority < 1 || v.Priority > 254 {
		k.fail("vrrp.priority", "priority %d: want 1-254 (255 is the address owner's, 0 means leaving)", v.Priority)
	}
	if v.AdvertInt == 0 {
		v.AdvertInt = time.Second
	}
	if v.AdvertInt < 10*time.Millisecond || v.AdvertInt > 40950*time.Millisecond {
		k.fail("vrrp.advert_int", "advert_int %s: VRRPv3 carries centiseconds, 10ms to 40.95s", v.AdvertInt)
	}
	if v.Preempt == nil {
		t := true
		v.Preempt = &t
	}
	if v.PreemptDelay < 0 || v.PreemptDelay > time.Hour {
		k.fail("vrrp.preempt_delay", "preempt_delay %s: want 0 to 1h", v.PreemptDelay)
	}
	if v.GARPRefresh != 0 && (v.GARPRefresh < v.AdvertInt || v.GARPRefresh > time.Hour) {
		k.fail("vrrp.garp_refresh", "garp_refresh %s: want 0 (none) or advert_int (%s) to 1h", v.GARPRefresh, v.AdvertInt)
	}
	if v.UnicastPeer.bad() {
		k.fail("vrrp.unicast_peer", "bad IPv4 address %q", v.UnicastPeer.raw)
	}
}

func (g *GuardConfig) validate(k *checker, services int) {
	if g.Mode == "" {
		g.Mode = GuardFwmark
	}
	switch g.Mode {
	case GuardFwmark:
		if g.Mark == 0 {
			k.fail("guard.mark", "fwmark guard needs a mark (the seed uses 3 on one box, 4 on the other)")
		}
		if g.Mask == 0 {
			g.Mask = DefaultMask(g.Mark)
		}
		if g.Mark&^g.Mask != 0 {
			k.fail("guard.mask", "mark %#x has bits outside mask %#x", g.Mark, g.Mask)
		}
		// One mark declares one virtual service.
		if services > 1 {
			k.fail("guard.mode", "the fwmark guard covers one service; this config has %d", services)
		}
		if g.RedirectPeer == nil {
			g.RedirectPeer = new(true)
		}
	case GuardBackupOnly, GuardNone:
		if g.Mark != 0 || g.Mask != 0 {
			k.fail("guard.mark", "mark and mask are only for mode fwmark")
		}
		if g.RedirectPeer != nil {
			k.fail("guard.redirect_peer", "redirect_peer is only for mode fwmark")
		}
	default:
		k.fail("guard.mode", "unknown mode %q: want fwmark, backup-only or none", g.Mode)
	}
	if g.PeerMAC.bad() {
		k.fail("guard.peer_mac", "bad MAC %q", g.PeerMAC.raw)
	}
}

func (s *ServiceConfig) validate(k *checker, p string, seen map[string]string) {
	if !s.VIP.IsValid() {
		k.fail(p+".vip", "bad VIP %q: want an IPv4 address", s.VIP.raw)
	}
	if s.Port < 1 || s.Port > 65535 {
		k.fail(p+".port", "port %d: want 1-65535", s.Port)
	}
	if s.Protocol == "" {
		s.Protocol = "tcp"
	}
	if s.Protocol != "tcp" && s.Protocol != "udp" {
		k.fail(p+".protocol", "protocol %q: want tcp or udp", s.Protocol)
	}
	if s.Scheduler == "" {
		s.Scheduler = "rr"
	}
	if !slices.Contains(Schedulers, s.Scheduler) {
		k.fail(p+".scheduler", "unknown scheduler %q (IPVS has %s)", s.Scheduler, strings.Join(Schedulers, ", "))
	}
	if s.Forward == "" {
		s.Forward = "dr"
	}
	if forwards[s.Forward] == "" {
		k.fail(p+".forward", "forward %q: want dr, nat or tun", s.Forward)
	}
	if s.Persistence < 0 || s.Persistence%time.Second != 0 {
		k.fail(p+".persistence", "persistence %s: want whole seconds", s.Persistence)
	}
	key := fmt.Sprintf("%s %s:%d", s.Protocol, s.VIP, s.Port)
	if other := seen[key]; other != "" {
		k.fail(p, "duplicate service %s (also %s)", key, other)
	}
	seen[key] = p
	if len(s.Realservers) == 0 {
		k.fail(p+".realservers", "at least one realserver is required")
	}
	dup := map[string]bool{}
	for j := range s.Realservers {
		r := &s.Realservers[j]
		rp := fmt.Sprintf("%s.realservers[%d]", p, j)
		if !r.Address.IsValid() {
			k.fail(rp+".address", "bad IPv4 address %q", r.Address.raw)
		}
		if r.Port == 0 {
			r.Port = s.Port
		}
		if r.Port < 1 || r.Port > 65535 {
			k.fail(rp+".port", "port %d: want 1-65535", r.Port)
		}
		if r.Weight == nil {
			w := 1
			r.Weight = &w
		}
		if *r.Weight < 0 || *r.Weight > maxWeight {
			k.fail(rp+".weight", "weight %d: want 0-%d", *r.Weight, maxWeight)
		}
		if id := fmt.Sprintf("%s:%d", r.Address, r.Port); dup[id] {
			k.fail(rp, "duplicate realserver %s", id)
		} else {
			dup[id] = true
		}
		r.Check.validate(k, rp+".check")
	}
}

func (ch *CheckConfig) validate(k *checker, p string) {
	if ch.Type == "" {
		ch.Type = "tcp"
	}
	if !slices.Contains(checkTypes, ch.Type) {
		k.fail(p+".type", "unknown check %q: want %s", ch.Type, strings.Join(checkTypes, ", "))
	}
	if ch.Interval == 0 {
		ch.Interval = 2 * time.Second
	}
	if ch.Timeout == 0 {
		ch.Timeout = time.Second
	}
	switch {
	case ch.Interval < minCheckInterval || ch.Interval > time.Hour:
		k.fail(p+".interval", "interval %s: want %s to 1h", ch.Interval, minCheckInterval)
	case ch.Timeout < 0:
		k.fail(p+".timeout", "timeout %s is negative", ch.Timeout)
	case ch.Timeout > ch.Interval:
		k.fail(p+".timeout", "timeout %s is longer than the interval %s", ch.Timeout, ch.Interval)
	}
	if ch.Rise == 0 {
		ch.Rise = 2
	}
	if ch.Fall == 0 {
		ch.Fall = 3
	}
	if ch.Rise < 1 || ch.Rise > 100 || ch.Fall < 1 || ch.Fall > 100 {
		k.fail(p, "rise %d, fall %d: want 1-100 each", ch.Rise, ch.Fall)
	}
	if ch.Type == "mysql-replica" && ch.MaxLag == 0 {
		ch.MaxLag = time.Minute
	}
	if ch.MaxLag < 0 {
		k.fail(p+".max_lag", "max_lag %s is negative", ch.MaxLag)
	}
	if ch.MaxLag != 0 && ch.Type != "mysql-replica" {
		k.fail(p+".max_lag", "max_lag is only for mysql-replica checks")
	}
	if ch.Type != "tcp" && ch.User == "" {
		k.fail(p+".user", "mysql checks need a user (and password)")
	}
	if ch.OnFail == "" {
		ch.OnFail = "quiesce"
	}
	if ch.OnFail != "quiesce" && ch.OnFail != "remove" {
		k.fail(p+".on_fail", "on_fail %q: want quiesce or remove", ch.OnFail)
	}
}

// checkSocketPath refuses a status socket path the director could not
// own: not absolute, or something other than a socket is already there
// (the director replaces a stale socket at start and removes it at stop).
func checkSocketPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("socket %q: want an absolute path", path)
	}
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("socket %s: a %s is there, not a socket; the director would replace it", path, describeMode(fi.Mode()))
	}
	return nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&os.ModeSymlink != 0:
		return "symbolic link"
	}
	return "file of mode " + m.Type().String()
}

// Desired is the IPVS table the config asks for, every realserver healthy:
// with the fwmark guard the services are declared by its mark.
func (c *Config) Desired() []Service { return c.DesiredWith(nil) }

// DesiredWith is Desired with the realservers down[service][realserver]
// quiesced (weight 0) or removed, as their check's on_fail says.
func (c *Config) DesiredWith(down map[[2]int]bool) []Service {
	var out []Service
	for i, s := range c.Services {
		svc := Service{Protocol: s.Protocol, VIP: s.VIP.Addr, Port: uint16(s.Port),
			Scheduler: s.Scheduler, Persistence: uint32(s.Persistence / time.Second)}
		if c.Guard.Mode == GuardFwmark {
			svc.Mark = c.Guard.Mark
		}
		for j, r := range s.Realservers {
			w := *r.Weight
			if down[[2]int{i, j}] {
				if r.Check.OnFail == "remove" {
					continue
				}
				w = 0
			}
			svc.Dests = append(svc.Dests, Dest{Addr: r.Address.Addr, Port: uint16(r.Port),
				Weight: w, Forward: forwards[s.Forward]})
		}
		out = append(out, svc)
	}
	return out
}
