package lab

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/lvslab/lvslab/lab/yamlcheck"
)

// Topology is a lab described as plain data: bridges, nodes and their
// interfaces. It is what fixtures/topologies/*.yaml decode into. Validate it
// (ParseTopology does) before handing it to Build.
type Topology struct {
	// Name identifies the topology in reports; it is not the lab's name.
	Name string `yaml:"name"`
	// VIP is the virtual IP the directors balance. Every realserver holds it
	// on lo; it must fall inside one of the lab's subnets.
	VIP string `yaml:"vip,omitempty"`
	// VIPs are more virtual IPs, held on lo like VIP: a pair that
	// balances several.
	VIPs    []string `yaml:"vips,omitempty"`
	Bridges []Bridge `yaml:"bridges,omitempty"`
	Nodes   []Node   `yaml:"nodes"`
}

// Bridge is a learning bridge in a namespace of its own; nodes attach to it
// with one veth pair per interface.
type Bridge struct {
	Name string `yaml:"name"`
}

// Node is one machine of the lab: a network namespace.
type Node struct {
	Name string `yaml:"name"`
	// Roles: client, director, realserver. A realserver gets the VIP on lo.
	Roles []string `yaml:"roles,omitempty"`
	// Services started by the lab: mysql.
	Services   []string    `yaml:"services,omitempty"`
	Interfaces []Interface `yaml:"interfaces"`
	// Sysctls are written inside the node's namespace, so only net.* keys.
	Sysctls map[string]string `yaml:"sysctls,omitempty"`
	// ServerID is mariadbd's server_id; defaults to the node's index + 1.
	ServerID int `yaml:"server_id,omitempty"`
}

// Interface is a network interface of a node: one end of a veth pair whose
// other end is a port of Bridge, or the interface named by Peer.
type Interface struct {
	Name      string   `yaml:"name"`
	MAC       string   `yaml:"mac,omitempty"`
	Addresses []string `yaml:"addresses,omitempty"`
	Bridge    string   `yaml:"bridge,omitempty"`
	// Peer is "node.interface" for a direct node-to-node link.
	Peer string `yaml:"peer,omitempty"`
	// Netem impairs the link from the start: both directions of a bridge
	// port's link, the frames the node sends on a direct one.
	Netem *Netem `yaml:"netem,omitempty"`
	// Routes are IPv4 prefixes outside the interface's subnets that the
	// node reaches on its link, as neighbours (a route of scope link): a
	// client reaching a VIP of another subnet without a router.
	Routes []string `yaml:"routes,omitempty"`
}

// Roles and services a topology may name.
const (
	RoleClient     = "client"
	RoleDirector   = "director"
	RoleRealserver = "realserver"
	ServiceMySQL   = "mysql"
)

var (
	knownRoles    = []string{RoleClient, RoleDirector, RoleRealserver}
	knownServices = []string{ServiceMySQL}
	// Names become parts of namespace and interface names.
	nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// sysctlRE is a net.* sysctl key: dotted words, nothing that could leave
// /proc/sys/net or end a line.
var sysctlRE = regexp.MustCompile(`^net(\.[A-Za-z0-9_-]+)+$`)

// netnsCoreSysctls are the net.core keys every kernel the runner boots
// (5.10 on) gives each network namespace (netns_core_table in
// net/core/sysctl_net_core.c); the rest of net.core is the host's and
// read-only inside a lab's namespace (6.9 added optmem_max, 5.19 txrehash).
var netnsCoreSysctls = []string{"net.core.somaxconn"}

// MaxNodes bounds a topology's nodes and bridges.
const MaxNodes = 64

// maxNameLen keeps "<node>-<iface>" bridge-port names readable and
// namespace names short; the kernel's own limit is IFNAMSIZ-1 = 15.
const (
	maxNameLen   = 12
	maxIfNameLen = 15
)

// BoxNames are the names of the lab's namespaces in order: the bridges',
// then the nodes'.
func (t *Topology) BoxNames() []string {
	var names []string
	for _, b := range t.Bridges {
		names = append(names, b.Name)
	}
	for _, n := range t.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// HasRole reports whether the node has role r.
func (n *Node) HasRole(r string) bool { return slices.Contains(n.Roles, r) }

// HasService reports whether the node runs service s.
func (n *Node) HasService(s string) bool { return slices.Contains(n.Services, s) }

// Node returns the node called name, or nil.
func (t *Topology) Node(name string) *Node {
	for i := range t.Nodes {
		if t.Nodes[i].Name == name {
			return &t.Nodes[i]
		}
	}
	return nil
}

// VIPAddr returns the parsed VIP; the zero Addr when there is none.
func (t *Topology) VIPAddr() netip.Addr {
	a, _ := netip.ParseAddr(t.VIP)
	return a
}

// VIPAddrs returns VIP and VIPs, parsed (valid after Validate).
func (t *Topology) VIPAddrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range append([]string{t.VIP}, t.VIPs...) {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// Prefixes returns the interface's parsed addresses (valid after Validate).
func (i *Interface) Prefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, a := range i.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// RoutePrefixes returns the interface's parsed routes (valid after
// Validate).
func (i *Interface) RoutePrefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, r := range i.Routes {
		if p, err := netip.ParsePrefix(r); err == nil {
			ps = append(ps, p.Masked())
		}
	}
	return ps
}

// HardwareAddr returns the parsed MAC, nil when the kernel picks one.
func (i *Interface) HardwareAddr() net.HardwareAddr {
	m, _ := net.ParseMAC(i.MAC)
	return m
}

// The validation error types, shared with the director's config
// (lab/yamlcheck).
type (
	FieldError      = yamlcheck.FieldError
	ValidationError = yamlcheck.ValidationError
)

// ErrInvalid marks every validation error (errors.Is).
var ErrInvalid = yamlcheck.ErrInvalid

// ParseTopologyFile reads and validates a topology file.
func ParseTopologyFile(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	return ParseTopology(path, data)
}

// ParseTopology decodes YAML strictly (unknown fields are errors) and
// validates it; errors carry file:line and the field's path.
func ParseTopology(file string, data []byte) (*Topology, error) {
	var t Topology
	if err := yamlcheck.Decode(file, data, &t, t.Validate); err != nil {
		return nil, err
	}
	return &t, nil
}

// Validate checks the topology without touching the kernel.
func (t *Topology) Validate() error {
	v := &validator{t: t, names: map[string]string{}, macs: map[string]string{},
		addrs: map[netip.Addr]string{}, vips: map[netip.Addr]string{}, ifaces: map[string]*Interface{}}
	v.run()
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

type validator struct {
	t      *Topology
	errs   ValidationError
	names  map[string]string // node and bridge names -> path
	macs   map[string]string
	addrs  map[netip.Addr]string
	vips   map[netip.Addr]string
	ifaces map[string]*Interface // "node.iface"
}

func (v *validator) fail(path, format string, a ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
}

func (v *validator) name(path, kind, name string) {
	switch {
	case name == "":
		v.fail(path, "%s name is required", kind)
	case !nameRE.MatchString(name):
		v.fail(path, "%s name %q: use lower-case letters, digits and '-', starting with a letter", kind, name)
	case len(name) > maxNameLen:
		v.fail(path, "%s name %q is %d characters, at most %d", kind, name, len(name), maxNameLen)
	case v.names[name] != "":
		v.fail(path, "duplicate name %q (also %s)", name, v.names[name])
	default:
		v.names[name] = path
	}
}

func (v *validator) run() {
	t := v.t
	if t.Name == "" {
		v.fail("name", "topology name is required")
	}
	switch {
	case len(t.Nodes) == 0:
		v.fail("nodes", "a topology needs at least one node")
	case len(t.Nodes) > MaxNodes || len(t.Bridges) > MaxNodes:
		// Each node is a namespace, each link two interfaces, a bridge a
		// namespace too: beyond this a lab runs out of file descriptors
		// half-built.
		v.fail("nodes", "%d nodes and %d bridges; a lab has at most %d of each", len(t.Nodes), len(t.Bridges), MaxNodes)
		return
	}
	bridges := map[string]bool{}
	for i, b := range t.Bridges {
		v.name(fmt.Sprintf("bridges[%d].name", i), "bridge", b.Name)
		if len(b.Name) > maxIfNameLen {
			v.fail(fmt.Sprintf("bridges[%d].name", i), "bridge name longer than %d", maxIfNameLen)
		}
		bridges[b.Name] = true
	}
	for i := range t.Nodes {
		v.node(i, bridges)
	}
	v.peers()
	v.vip()
}

func (v *validator) node(i int, bridges map[string]bool) {
	n := &v.t.Nodes[i]
	p := fmt.Sprintf("nodes[%d]", i)
	v.name(p+".name", "node", n.Name)
	for j, r := range n.Roles {
		if !slices.Contains(knownRoles, r) {
			v.fail(fmt.Sprintf("%s.roles[%d]", p, j), "unknown role %q (want one of %s)", r, strings.Join(knownRoles, ", "))
		}
	}
	for j, s := range n.Services {
		if !slices.Contains(knownServices, s) {
			v.fail(fmt.Sprintf("%s.services[%d]", p, j), "unknown service %q (want one of %s)", s, strings.Join(knownServices, ", "))
		}
	}
	for k := range n.Sysctls {
		// A quoted path element: the key's dots are not YAML path steps.
		kp := fmt.Sprintf("%s.sysctls.'%s'", p, strings.ReplaceAll(k, "'", `\'`))
		switch {
		case !sysctlRE.MatchString(k): // the key may not be printable: point at the map
			v.fail(p+".sysctls", "sysctl %q: only net.* keys are per-namespace", k)
		case strings.HasPrefix(k, "net.core.") && !slices.Contains(netnsCoreSysctls, k):
			v.fail(kp, "sysctl %q: net.core keys but %s are the host's, not writable in a lab namespace", k, strings.Join(netnsCoreSysctls, ", "))
		}
	}
	if n.ServerID < 0 || n.ServerID > math.MaxUint32 {
		v.fail(p+".server_id", "server_id %d: want 0 to %d (mariadbd's range)", n.ServerID, uint32(math.MaxUint32))
	}
	if len(n.Interfaces) == 0 {
		v.fail(p+".interfaces", "node %q has no interfaces", n.Name)
	}
	seen := map[string]bool{}
	for j := range n.Interfaces {
		v.iface(n, &n.Interfaces[j], fmt.Sprintf("%s.interfaces[%d]", p, j), seen, bridges)
	}
}

// iface checks interface ifc of node n, at YAML path ip; seen are the
// node's interface names so far.
func (v *validator) iface(n *Node, ifc *Interface, ip string, seen, bridges map[string]bool) {
	if ifc.Netem != nil {
		if _, field, err := ifc.Netem.attrs(); err != nil {
			v.fail(ip+".netem."+field, "%v", err)
		}
	}
	switch {
	case ifc.Name == "":
		v.fail(ip+".name", "interface name is required")
	case len(ifc.Name) > maxIfNameLen:
		v.fail(ip+".name", "interface name %q is %d characters, the kernel allows %d", ifc.Name, len(ifc.Name), maxIfNameLen)
	case ifc.Name == "lo" || strings.ContainsAny(ifc.Name, "/: ."):
		v.fail(ip+".name", "interface name %q is reserved or has '/', ':', '.' or a space", ifc.Name)
	case seen[ifc.Name]:
		v.fail(ip+".name", "duplicate interface %q on node %q", ifc.Name, n.Name)
	}
	seen[ifc.Name] = true
	v.ifaces[n.Name+"."+ifc.Name] = ifc
	if ifc.MAC != "" {
		m, err := net.ParseMAC(ifc.MAC)
		switch {
		case err != nil || len(m) != 6:
			v.fail(ip+".mac", "bad MAC %q", ifc.MAC)
		case m[0]&1 != 0:
			v.fail(ip+".mac", "MAC %s is multicast", ifc.MAC)
		case v.macs[m.String()] != "":
			v.fail(ip+".mac", "duplicate MAC %s (also %s)", ifc.MAC, v.macs[m.String()])
		default:
			v.macs[m.String()] = n.Name + "." + ifc.Name
		}
	}
	for k, a := range ifc.Addresses {
		ap := fmt.Sprintf("%s.addresses[%d]", ip, k)
		pfx, err := netip.ParsePrefix(a)
		if err != nil || !pfx.Addr().Is4() {
			v.fail(ap, "bad address %q: want an IPv4 CIDR such as 192.168.1.10/24", a)
			continue
		}
		if owner := v.addrs[pfx.Addr()]; owner != "" {
			v.fail(ap, "duplicate address %s (also %s)", pfx.Addr(), owner)
		}
		v.addrs[pfx.Addr()] = n.Name + "." + ifc.Name
	}
	for k, r := range ifc.Routes {
		if pfx, err := netip.ParsePrefix(r); err != nil || !pfx.Addr().Is4() {
			v.fail(fmt.Sprintf("%s.routes[%d]", ip, k), "bad route %q: want an IPv4 prefix such as 203.0.113.10/32", r)
		}
	}
	switch {
	case ifc.Bridge == "" && ifc.Peer == "":
		v.fail(ip, "interface %q needs a link: bridge or peer", ifc.Name)
	case ifc.Bridge != "" && ifc.Peer != "":
		v.fail(ip, "interface %q has both bridge and peer", ifc.Name)
	case ifc.Bridge != "" && !bridges[ifc.Bridge]:
		v.fail(ip+".bridge", "link to missing bridge %q", ifc.Bridge)
	}
}

// peers checks direct links after every interface is known.
func (v *validator) peers() {
	for i, n := range v.t.Nodes {
		for j, ifc := range n.Interfaces {
			if ifc.Peer == "" {
				continue
			}
			p := fmt.Sprintf("nodes[%d].interfaces[%d].peer", i, j)
			node, _, ok := strings.Cut(ifc.Peer, ".")
			other := v.ifaces[ifc.Peer]
			switch {
			case !ok:
				v.fail(p, "peer %q: want node.interface", ifc.Peer)
			case v.t.Node(node) == nil:
				v.fail(p, "link to missing node %q", node)
			case other == nil:
				v.fail(p, "link to missing interface %q", ifc.Peer)
			case other.Peer != n.Name+"."+ifc.Name:
				v.fail(p, "peer %q does not link back to %s.%s", ifc.Peer, n.Name, ifc.Name)
			}
		}
	}
}

func (v *validator) vip() {
	t := v.t
	rs := slices.ContainsFunc(t.Nodes, func(n Node) bool { return n.HasRole(RoleRealserver) })
	if t.VIP == "" {
		if rs {
			v.fail("vip", "realservers need a vip")
		}
		if len(t.VIPs) > 0 {
			v.fail("vips", "more vips need a vip first")
		}
		return
	}
	v.oneVIP("vip", t.VIP)
	for k, s := range t.VIPs {
		v.oneVIP(fmt.Sprintf("vips[%d]", k), s)
	}
}

func (v *validator) oneVIP(path, s string) {
	vip, err := netip.ParseAddr(s)
	if err != nil || !vip.Is4() {
		v.fail(path, "bad VIP %q: want an IPv4 address", s)
		return
	}
	if owner := v.addrs[vip]; owner != "" {
		v.fail(path, "VIP %s is also an interface address (%s)", vip, owner)
	}
	if other := v.vips[vip]; other != "" {
		v.fail(path, "VIP %s is also %s", vip, other)
	}
	v.vips[vip] = path
	for _, n := range v.t.Nodes {
		for _, ifc := range n.Interfaces {
			for _, p := range append(ifc.Prefixes(), ifc.RoutePrefixes()...) {
				if p.Contains(vip) {
					return
				}
			}
		}
	}
	v.fail(path, "VIP %s is outside every subnet and route of the lab", vip)
}
