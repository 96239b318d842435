package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultRunDir holds one directory per running lab: its state file, logs,
// pid files and MariaDB data (on a tmpfs the lab mounts).
const DefaultRunDir = "/run/lvslab"

// ErrNotRoot is returned when building or removing labs without root.
var ErrNotRoot = errors.New("lvslab needs root (network namespaces, veth, mounts): run it with sudo")

// ErrExists is returned when a lab of the same name is already up.
var ErrExists = errors.New("already exists")

var labNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)

// ErrBadName is wrapped by the errors of CheckLabName and CheckNodeName:
// names become parts of paths (/run/lvslab/<lab>, /run/netns/lvslab-<lab>.<node>),
// so one that is not a plain name is refused before it reaches any.
var ErrBadName = errors.New("bad name")

// CheckLabName refuses a lab name that is empty or not a plain name.
func CheckLabName(name string) error {
	if !labNameRE.MatchString(name) {
		return fmt.Errorf("%w: lab name %q: use 1 to 20 lower-case letters, digits and '-'", ErrBadName, name)
	}
	return nil
}

// CheckNodeName refuses a node name a topology could not have.
func CheckNodeName(name string) error {
	if !nameRE.MatchString(name) || len(name) > maxNameLen {
		return fmt.Errorf("%w: node name %q: a topology's node names are lower-case letters, digits and '-', at most %d", ErrBadName, name, maxNameLen)
	}
	return nil
}

// Options tune Build.
type Options struct {
	// Name of the lab; a random "t1a2b3c" when empty. Two labs need two names.
	Name string
	// RunDir is the parent of the lab's run directory (DefaultRunDir).
	RunDir string
	// Detach lets processes outlive this Go process (lvslab up). Otherwise
	// they get SIGKILL when it dies.
	Detach bool
	// NoServices skips MariaDB and other services: network only.
	NoServices bool
	// Progress receives one line per step that may take a while.
	Progress io.Writer
}

// Lab is a built topology: namespaces, links, addresses and processes.
type Lab struct {
	Name string
	Topo *Topology
	// Dir is the lab's run directory.
	Dir string

	opts    Options
	boxes   map[string]*Box
	procs   map[string]*Process // by "box.name", the latest started
	mu      sync.Mutex
	undo    []undoStep
	closed  bool
	Started time.Time

	// waited sums the time this lab waited for admission (Admit).
	waited atomic.Int64
	tmplMu sync.Mutex
	tmpl   string // MariaDB template datadir, once made
}

type undoStep struct {
	what string
	fn   func() error
	// together: consecutive such steps run at once (stopping processes,
	// which may each wait for a graceful exit).
	together bool
}

// Box is a namespace of the lab: a node, or the home of a bridge.
type Box struct {
	Name string
	lab  *Lab
	ns   netns.NsHandle
	nl   *netlink.Handle
	// launcher sits in the namespace for the lab's lifetime; attached
	// processes are forked from it so Pdeathsig ties them to this process.
	launcher *nsThread
}

// State is what a lab's run directory records, so another shell can reach
// the lab (status, exec, down).
type State struct {
	Name     string    `json:"name"`
	Topology *Topology `json:"topology"`
	// PID built the lab; for a lab in a micro-VM it is qemu's.
	PID     int       `json:"pid"`
	Created time.Time `json:"created"`
	// Runner is "vm" when the lab lives in a micro-VM, reached through the
	// agent socket in the run directory; empty when native.
	Runner string `json:"runner,omitempty"`
}

// Build creates the lab's namespaces, bridges, veths, addresses, sysctls and
// services. On error it tears down whatever it built.
func Build(ctx context.Context, topo *Topology, opts Options) (_ *Lab, err error) {
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if opts.Name == "" {
		opts.Name = RandomName()
	}
	if err := CheckLabName(opts.Name); err != nil {
		return nil, err
	}
	if opts.RunDir == "" {
		opts.RunDir = DefaultRunDir
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	l := &Lab{Name: opts.Name, Topo: topo, Dir: filepath.Join(opts.RunDir, opts.Name),
		opts: opts, boxes: map[string]*Box{}, procs: map[string]*Process{}, Started: time.Now()}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	if err := l.claim(); err != nil {
		return nil, err
	}
	if err := l.buildNet(ctx); err != nil {
		return nil, err
	}
	if !opts.NoServices {
		if err := l.startServices(ctx); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// buildNet creates the bridges, the nodes' namespaces and their links,
// once admitted (AdmitLab).
func (l *Lab) buildNet(ctx context.Context) error {
	slot, err := l.admit(ctx, AdmitLab)
	if err != nil {
		return err
	}
	defer slot.Release()
	topo := l.Topo
	for _, b := range topo.Bridges {
		if err := l.buildBridge(b); err != nil {
			return err
		}
	}
	for i := range topo.Nodes {
		if err := l.buildNode(&topo.Nodes[i]); err != nil {
			return err
		}
	}
	for i := range topo.Nodes {
		if err := l.linkNode(&topo.Nodes[i]); err != nil {
			return err
		}
	}
	return nil
}

// admit waits for a slot of kind (Admit), counting the wait as the lab's.
func (l *Lab) admit(ctx context.Context, kind Admission) (*Slot, error) {
	slot, waited, err := Admit(ctx, kind)
	l.waited.Add(int64(waited))
	return slot, err
}

// AdmissionWait is how long the lab has waited for admission so far: time
// that its own bounds should not count.
func (l *Lab) AdmissionWait() time.Duration { return time.Duration(l.waited.Load()) }

// RandomName returns a fresh lab name such as "t3f9a1c".
func RandomName() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

func (l *Lab) progress(format string, a ...any) {
	fmt.Fprintf(l.opts.Progress, "lvslab: "+format+"\n", a...)
}

func (l *Lab) push(what string, fn func() error) { l.pushStep(undoStep{what: what, fn: fn}) }

func (l *Lab) pushStep(s undoStep) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.undo = append(l.undo, s)
}

// Claim creates the run directory of the lab called name, failing with
// ErrExists if that lab has a namespace or a run directory already.
func Claim(runDir, name string) (string, error) {
	names, err := listNamedNS(nsName(name, ""))
	if err != nil {
		return "", fmt.Errorf("lab %q: list the namespaces: %w", name, err)
	}
	if len(names) > 0 {
		return "", fmt.Errorf("lab %q %w (namespace %s): run `lvslab down --lab %s`", name, ErrExists, names[0], name)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return "", fmt.Errorf("create run dir: %w", err)
	}
	dir := filepath.Join(runDir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("lab %q %w (%s): run `lvslab down --lab %s`", name, ErrExists, dir, name)
		}
		return "", fmt.Errorf("create run dir: %w", err)
	}
	return dir, nil
}

// claim creates the run directory, a tmpfs on it and the state file.
func (l *Lab) claim() error {
	if _, err := Claim(l.opts.RunDir, l.Name); err != nil {
		return err
	}
	l.push("remove "+l.Dir, func() error { return os.RemoveAll(l.Dir) })
	// MariaDB datadirs and logs live in RAM; /run is not a tmpfs everywhere.
	if err := unix.Mount("tmpfs", l.Dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=2g,mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", l.Dir, err)
	}
	l.push("unmount "+l.Dir, func() error { return unix.Unmount(l.Dir, unix.MNT_DETACH) })
	st := State{Name: l.Name, Topology: l.Topo, PID: os.Getpid(), Created: l.Started}
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(l.Dir, "lab.json"), data, 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// newBox creates the namespace for a node or bridge, with lo up and IPv6
// off: the lab is IPv4-only, and IPv6 autoconfiguration would put frames on
// the bridge that no scenario sent.
func (l *Lab) newBox(name string) (*Box, error) {
	nsn := nsName(l.Name, name)
	h, err := createNamedNS(nsn)
	if err != nil {
		return nil, err
	}
	b := &Box{Name: name, lab: l, ns: h}
	l.boxes[name] = b
	l.push("delete namespace "+nsn, func() error { return deleteNamedNS(nsn) })
	l.push("close handle of "+nsn, func() error { return h.Close() })
	if b.nl, err = netlink.NewHandleAt(h); err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", nsn, err)
	}
	l.push("close netlink of "+nsn, func() error { b.nl.Close(); return nil })
	b.launcher, err = startThread(func() error { return netns.Set(h) })
	if err != nil {
		return nil, fmt.Errorf("enter %s: %w", nsn, err)
	}
	l.push("stop launcher of "+nsn, func() error { b.launcher.stop(); return nil })
	if err := b.SetSysctls(map[string]string{
		"net.ipv6.conf.all.disable_ipv6":     "1",
		"net.ipv6.conf.default.disable_ipv6": "1",
	}); err != nil {
		return nil, err
	}
	lo, err := b.nl.LinkByName("lo")
	if err == nil {
		err = b.nl.LinkSetUp(lo)
	}
	if err != nil {
		return nil, fmt.Errorf("set lo up in %s: %w", nsn, err)
	}
	return b, nil
}

func (l *Lab) buildBridge(br Bridge) error {
	b, err := l.newBox(br.Name)
	if err != nil {
		return err
	}
	// No STP and no forward delay: ports forward at once.
	dev := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br.Name}}
	if err := b.nl.LinkAdd(dev); err != nil {
		return fmt.Errorf("add bridge %s in %s: %w", br.Name, b.Path(), err)
	}
	if err := b.nl.LinkSetUp(dev); err != nil {
		return fmt.Errorf("set bridge %s up: %w", br.Name, err)
	}
	return nil
}

func (l *Lab) buildNode(n *Node) error {
	b, err := l.newBox(n.Name)
	if err != nil {
		return err
	}
	if err := b.SetSysctls(n.Sysctls); err != nil {
		return err
	}
	if n.HasRole(RoleRealserver) {
		for _, vip := range l.Topo.VIPAddrs() {
			if err := b.EnsureAddr("lo", netip.PrefixFrom(vip, 32)); err != nil {
				return err
			}
		}
	}
	return nil
}

// portName is the bridge-side name of node's interface ifc: "d1-eth0", or
// "p<index>" when that would not fit in IFNAMSIZ.
func portName(node, ifc string, index int) string {
	if n := node + "-" + ifc; len(n) <= maxIfNameLen {
		return n
	}
	return fmt.Sprintf("p%d", index)
}

// linkNode creates the node's veths directly in both target namespaces,
// then sets addresses and brings both ends up.
func (l *Lab) linkNode(n *Node) error {
	b := l.boxes[n.Name]
	for i := range n.Interfaces {
		ifc := &n.Interfaces[i]
		var peerBox *Box
		var peerName string
		var peerMAC net.HardwareAddr
		switch {
		case ifc.Bridge != "":
			peerBox = l.boxes[ifc.Bridge]
			peerName = portName(n.Name, ifc.Name, l.portIndex(n, ifc))
		default:
			pn, pi, _ := strings.Cut(ifc.Peer, ".")
			if pn < n.Name { // the other side created this pair
				continue
			}
			peerBox, peerName = l.boxes[pn], pi
			peerMAC = l.Topo.Node(pn).iface(pi).HardwareAddr()
		}
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: ifc.Name, HardwareAddr: ifc.HardwareAddr()},
			PeerName:         peerName,
			PeerHardwareAddr: peerMAC,
			PeerNamespace:    netlink.NsFd(peerBox.ns),
		}
		if err := b.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s (%s) to %s: %w", ifc.Name, b.Path(), peerName, err)
		}
		peer, err := peerBox.nl.LinkByName(peerName)
		if err != nil {
			return fmt.Errorf("find veth end %s in %s: %w", peerName, peerBox.Path(), err)
		}
		if ifc.Bridge != "" {
			if err := peerBox.nl.LinkSetAlias(peer, n.Name+"."+ifc.Name); err != nil {
				return fmt.Errorf("set alias of %s: %w", peerName, err)
			}
			br, err := peerBox.nl.LinkByName(ifc.Bridge)
			if err == nil {
				err = peerBox.nl.LinkSetMaster(peer, br)
			}
			if err != nil {
				return fmt.Errorf("attach %s to bridge %s: %w", peerName, ifc.Bridge, err)
			}
		}
		if err := peerBox.nl.LinkSetUp(peer); err != nil {
			return fmt.Errorf("set %s up in %s: %w", peerName, peerBox.Path(), err)
		}
	}
	for i := range n.Interfaces {
		if err := l.configure(n, &n.Interfaces[i]); err != nil {
			return err
		}
	}
	return nil
}

// configure gives node n's interface ifc, linked, its addresses, routes
// and impairment, and sets it up.
func (l *Lab) configure(n *Node, ifc *Interface) error {
	b := l.boxes[n.Name]
	for _, p := range ifc.Prefixes() {
		if err := b.EnsureAddr(ifc.Name, p); err != nil {
			return err
		}
	}
	link, err := b.nl.LinkByName(ifc.Name)
	if err == nil {
		err = b.nl.LinkSetUp(link)
	}
	if err != nil {
		return fmt.Errorf("set %s up in %s: %w", ifc.Name, b.Path(), err)
	}
	for _, p := range ifc.RoutePrefixes() {
		dst := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
		if err := b.nl.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route %s dev %s in %s: %w", p, ifc.Name, b.Path(), err)
		}
	}
	if ifc.Netem == nil {
		return nil
	}
	for _, toNode := range []bool{false, true} {
		if toNode && ifc.Bridge == "" {
			continue
		}
		if _, err := l.Impair(n.Name, ifc.Name, toNode, Match{}, *ifc.Netem); err != nil {
			return err
		}
	}
	return nil
}

// portIndex numbers bridge ports in topology order, for PortName.
func (l *Lab) portIndex(n *Node, ifc *Interface) int {
	i := 0
	for _, nn := range l.Topo.Nodes {
		for _, ii := range nn.Interfaces {
			if nn.Name == n.Name && ii.Name == ifc.Name {
				return i
			}
			i++
		}
	}
	return i
}

func (n *Node) iface(name string) *Interface {
	for i := range n.Interfaces {
		if n.Interfaces[i].Name == name {
			return &n.Interfaces[i]
		}
	}
	return nil
}

// Process returns the latest process called name started in box, or nil.
func (l *Lab) Process(box, name string) *Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[box+"."+name]
}

// Box returns the namespace of a node or bridge, or nil.
func (l *Lab) Box(name string) *Box { return l.boxes[name] }

// Boxes returns the lab's boxes in topology order: bridges, then nodes.
func (l *Lab) Boxes() []*Box {
	var bs []*Box
	for _, name := range l.Topo.BoxNames() {
		bs = append(bs, l.boxes[name])
	}
	return slices.DeleteFunc(bs, func(b *Box) bool { return b == nil })
}

// Close stops the lab's processes and removes everything it created, in
// reverse order (processes started one after another are stopped at once);
// it keeps going on errors and returns them joined.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	undo := l.undo
	l.undo = nil
	l.mu.Unlock()
	errs := make([]error, len(undo))
	for i := len(undo) - 1; i >= 0; {
		var wg sync.WaitGroup
		for first := true; i >= 0 && (first || undo[i].together && undo[i+1].together); i-- {
			first = false
			k, step := i, undo[i]
			wg.Go(func() {
				if err := step.fn(); err != nil {
					errs[k] = fmt.Errorf("%s: %w", step.what, err)
				}
			})
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// Path is the bind mount of the box's namespace, e.g. for ipvs.New.
func (b *Box) Path() string { return filepath.Join(NetnsDir, nsName(b.lab.Name, b.Name)) }

// Netlink returns a netlink handle bound to the box's namespace; it is safe
// to use from any goroutine.
func (b *Box) Netlink() *netlink.Handle { return b.nl }

// Do runs f on a thread inside the box's namespace. Goroutines f starts do
// not run in the namespace.
func (b *Box) Do(f func() error) error { return doIn(b.Path(), f) }

// DialFrom returns a dial function like DialContext's that binds the
// connection's source to local, one of the box's addresses (the kernel's
// choice when local is the zero Addr).
func (b *Box) DialFrom(local netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return b.DialFromPort(netip.AddrPortFrom(local, 0))
}

// DialFromPort is DialFrom from local's address and, when it is not 0,
// its port, taken again (SO_REUSEADDR) while the box's own TIME_WAIT
// holds it, as a busy client under tcp_tw_reuse does.
func (b *Box) DialFromPort(local netip.AddrPort) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{}
		switch {
		case !local.Addr().IsValid() && local.Port() == 0:
		case strings.HasPrefix(network, "udp"):
			d.LocalAddr = net.UDPAddrFromAddrPort(local)
		default:
			d.LocalAddr = net.TCPAddrFromAddrPort(local)
		}
		if local.Port() != 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) }); err != nil {
					return err
				}
				return serr
			}
		}
		var c net.Conn
		err := b.Do(func() (err error) {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// DialContext dials from inside the box's namespace; the socket stays there.
func (b *Box) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return b.DialFrom(netip.Addr{})(ctx, network, addr)
}

// EnsureAddr adds p to the box's interface dev unless it is already there.
func (b *Box) EnsureAddr(dev string, p netip.Prefix) error {
	link, err := b.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", dev, b.Path(), err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := b.nl.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s on %s in %s: %w", p, dev, b.Path(), err)
	}
	return nil
}

// SetSysctls writes net.* sysctls inside the box's namespace: /proc/sys/net
// shows the namespace of the thread that opens it.
func (b *Box) SetSysctls(kv map[string]string) error {
	if len(kv) == 0 {
		return nil
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys) // "all" before "default" before per-device keys
	return b.launcher.run(func() error {
		for _, k := range keys {
			p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(p, []byte(kv[k]), 0o644); err != nil {
				return fmt.Errorf("set sysctl %s=%s in %s: %w", k, kv[k], b.Path(), err)
			}
		}
		return nil
	})
}
