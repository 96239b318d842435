package keepalivedconf

import (
	"cmp"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config is the part of a keepalived configuration that decides how two
// LVS-DR directors behave: VRRP and virtual services.
type Config struct {
	Files          []string                `json:"files"` // the main file first
	Includes       []Include               `json:"includes,omitempty"`
	Outside        []string                `json:"outside,omitempty"` // of Files, those outside the main file's directory
	Global         Global                  `json:"global_defs"`
	Instances      []*Instance             `json:"vrrp_instances"`
	SyncGroups     []*SyncGroup            `json:"vrrp_sync_groups,omitempty"`
	Scripts        map[string]*Script      `json:"vrrp_scripts,omitempty"`
	ServerGroups   map[string]*ServerGroup `json:"virtual_server_groups,omitempty"`
	VirtualServers []*VirtualServer        `json:"virtual_servers"`
	// Unmodelled are the keywords this package keeps but does not
	// interpret: keepalived may know them; lvslab runs them unchanged.
	Unmodelled []Unmodelled `json:"unmodelled,omitempty"`
}

// Unmodelled is a keyword kept as written.
type Unmodelled struct {
	Pos   Pos    `json:"pos"`
	Block string `json:"block"` // where it sits, e.g. "vrrp_instance VI_1"
	Key   string `json:"key"`
}

// Global is global_defs.
type Global struct {
	RouterID      string      `json:"router_id,omitempty"`
	VRRPStrict    bool        `json:"vrrp_strict,omitempty"`
	VRRPStrictPos Pos         `json:"-"`
	VRRPVersion   int         `json:"vrrp_version,omitempty"` // 0: not given (2)
	SyncDaemon    *SyncDaemon `json:"lvs_sync_daemon,omitempty"`
}

// SyncDaemon is global_defs' lvs_sync_daemon INTERFACE [INSTANCE] [id N].
type SyncDaemon struct {
	Pos       Pos    `json:"pos"`
	Interface string `json:"interface"`
	Instance  string `json:"instance,omitempty"`
	ID        int    `json:"id,omitempty"`
}

// Instance is a vrrp_instance.
type Instance struct {
	Pos          Pos           `json:"pos"`
	Name         string        `json:"name"`
	State        string        `json:"state"` // MASTER or BACKUP as written
	Interface    string        `json:"interface"`
	InterfacePos Pos           `json:"-"`
	VRID         int           `json:"virtual_router_id"`
	Priority     int           `json:"priority"`
	PriorityPos  Pos           `json:"-"` // zero: the default, 100
	AdvertInt    time.Duration `json:"advert_int_ns"`
	VIPs         []VIP         `json:"virtual_ipaddress"`
	UnicastSrc   netip.Addr    `json:"unicast_src_ip,omitzero"`
	McastSrc     netip.Addr    `json:"mcast_src_ip,omitzero"`
	UnicastPeers []netip.Addr  `json:"unicast_peer,omitempty"`
	NoPreempt    bool          `json:"nopreempt,omitempty"`
	// Accept is accept: the MASTER takes packets for the VIPs although
	// it does not own them (RFC 5798's Accept_Mode; what vrrp_strict
	// turns off).
	Accept bool `json:"accept,omitempty"`
	// Version is the instance's VRRP version (0: global_defs', else 2).
	Version      int               `json:"version,omitempty"`
	PreemptDelay time.Duration     `json:"preempt_delay_ns,omitempty"`
	TrackScripts []string          `json:"track_script,omitempty"`
	Notify       map[string]string `json:"notify,omitempty"` // notify, notify_master, ... -> command
	NotifyPos    map[string]Pos    `json:"-"`
	// SyncInterface is the deprecated per-instance lvs_sync_daemon_interface.
	SyncInterface    string `json:"lvs_sync_daemon_interface,omitempty"`
	SyncInterfacePos Pos    `json:"-"`
	// TrackInterfaces are track_interface's lines: an interface each.
	TrackInterfaces []Named `json:"track_interface,omitempty"`
}

// Named is a name a config gives on a line of its own.
type Named struct {
	Pos  Pos    `json:"pos"`
	Name string `json:"name"`
}

// VIP is one virtual_ipaddress line: ADDR[/LEN] [dev DEV] [label LABEL].
type VIP struct {
	Pos    Pos          `json:"pos"`
	Prefix netip.Prefix `json:"prefix"`
	Dev    string       `json:"dev,omitempty"`
	Label  string       `json:"label,omitempty"`
}

// SyncGroup is a vrrp_sync_group: instances that change state together.
type SyncGroup struct {
	Pos       Pos      `json:"pos"`
	Name      string   `json:"name"`
	Instances []string `json:"group"`
}

// Script is a vrrp_script.
type Script struct {
	Pos        Pos           `json:"pos"`
	Name       string        `json:"name"`
	Command    string        `json:"script"`
	CommandPos Pos           `json:"-"`
	Interval   time.Duration `json:"interval_ns,omitempty"`
	Weight     int           `json:"weight,omitempty"`
}

// ServerGroup is a virtual_server_group: addresses (with last-octet
// ranges, 192.168.200.3-10), ports, fwmarks.
type ServerGroup struct {
	Pos     Pos          `json:"pos"`
	Name    string       `json:"name"`
	Entries []GroupEntry `json:"entries"`
}

// GroupEntry is one line of a virtual_server_group.
type GroupEntry struct {
	Pos   Pos        `json:"pos"`
	First netip.Addr `json:"first,omitzero"`
	Last  netip.Addr `json:"last,omitzero"` // == First unless a range
	Port  uint16     `json:"port,omitempty"`
	Mark  uint32     `json:"fwmark,omitempty"`
}

// VirtualServer is a virtual_server: by address and port, by fwmark, or
// by group.
type VirtualServer struct {
	Pos    Pos        `json:"pos"`
	Addr   netip.Addr `json:"addr,omitzero"`
	Port   uint16     `json:"port,omitempty"`
	Mark   uint32     `json:"fwmark,omitempty"`
	Group  string     `json:"group,omitempty"`
	LBAlgo string     `json:"lb_algo"`
	// LBKind is the forwarding method keepalived uses: DR, NAT or TUN as
	// written (it knows them in capitals only), else NAT, its default;
	// LBKindUnknown is a method written that it does not know ("dr").
	LBKind        string `json:"lb_kind"`
	LBKindUnknown string `json:"lb_kind_unknown,omitempty"`
	// Protocol is the IPVS protocol keepalived gives the service: its
	// protocol keyword, else UDP, keepalived's own default for a service
	// by address or group ("no protocol set - defaulting to UDP": the
	// kernel's default for protocol 0). ProtocolPos is the keyword's
	// line, zero where the config gives none.
	Protocol    string        `json:"protocol"`
	ProtocolPos Pos           `json:"protocol_pos,omitzero"`
	Persistence uint32        `json:"persistence_timeout,omitempty"`
	Granularity string        `json:"persistence_granularity,omitempty"`
	DelayLoop   time.Duration `json:"delay_loop_ns,omitempty"`
	Sorry       *RealServer   `json:"sorry_server,omitempty"`
	RealServers []*RealServer `json:"real_servers"`
	// Node is the block as written, for rewriting the config.
	Node *Node `json:"-"`
}

// Key names the service as ipvsadm does: "TCP 192.168.1.200:3306",
// "FWM 3", or "group VSG_1".
func (v *VirtualServer) Key() string {
	switch {
	case v.Group != "":
		return "group " + v.Group
	case v.Mark != 0:
		return fmt.Sprintf("FWM %d", v.Mark)
	}
	return fmt.Sprintf("%s %s", strings.ToUpper(v.Protocol), netip.AddrPortFrom(v.Addr, v.Port))
}

// RealServer is a real_server with its checkers.
type RealServer struct {
	Pos              Pos        `json:"pos"`
	Addr             netip.Addr `json:"addr"`
	Port             uint16     `json:"port"`
	Weight           int        `json:"weight"`
	InhibitOnFailure bool       `json:"inhibit_on_failure,omitempty"`
	Checks           []*Check   `json:"checks,omitempty"`
}

// Checker kinds keepalived runs against a real server.
const (
	TCPCheck  = "TCP_CHECK"
	HTTPGet   = "HTTP_GET"
	SSLGet    = "SSL_GET"
	MiscCheck = "MISC_CHECK"
	SMTPCheck = "SMTP_CHECK"
	DNSCheck  = "DNS_CHECK"
)

var checkKinds = []string{TCPCheck, HTTPGet, SSLGet, MiscCheck, SMTPCheck, DNSCheck, "UDP_CHECK", "PING_CHECK", "FILE_CHECK", "BFD_CHECK"}

// Check is a checker block.
type Check struct {
	Pos            Pos           `json:"pos"`
	Kind           string        `json:"kind"`
	ConnectIP      netip.Addr    `json:"connect_ip,omitzero"`
	ConnectPort    uint16        `json:"connect_port,omitempty"`
	ConnectTimeout time.Duration `json:"connect_timeout_ns,omitempty"`
	URLs           []URL         `json:"urls,omitempty"`
	MiscPath       string        `json:"misc_path,omitempty"`
	MiscPathPos    Pos           `json:"-"`
	MiscDynamic    bool          `json:"misc_dynamic,omitempty"`
	MiscTimeout    time.Duration `json:"misc_timeout_ns,omitempty"`
	// Retry is retry (nb_get_retry, the old name): failed checks after
	// the first before the server is taken out (-1: not given, 1).
	Retry            int           `json:"retry"`
	DelayBeforeRetry time.Duration `json:"delay_before_retry_ns,omitempty"`
}

// URL is an HTTP_GET/SSL_GET url block.
type URL struct {
	Path       string `json:"path"`
	StatusCode string `json:"status_code,omitempty"`
	Digest     string `json:"digest,omitempty"`
	DigestPos  Pos    `json:"-"`
}

// StrictDrops are the instances whose VIPs keepalived drops every packet
// to on the box that holds them: under vrrp_strict, those without accept
// or under VRRP version 2 (keepalived resets accept there).
func (c *Config) StrictDrops() []string {
	if !c.Global.VRRPStrict {
		return nil
	}
	var names []string
	for _, in := range c.Instances {
		if v := cmp.Or(in.Version, c.Global.VRRPVersion, 2); !in.Accept || v == 2 {
			names = append(names, in.Name)
		}
	}
	return names
}
