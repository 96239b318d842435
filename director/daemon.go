package director

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/lvslab/lvslab/director/afpacket"
)

// Daemon is a running director in the current network namespace: VRRP
// decides MASTER or BACKUP, the VIP follows, IPVS and the loop guard stay
// installed in both states (that is the two-box setup), and a clean stop
// removes everything it installed.
type Daemon struct {
	cfg  *Config
	log  *slog.Logger
	ifi  *net.Interface
	nl   Netlink
	link netlink.Link
	addr netip.Prefix // our primary address on the VRRP interface
	vips []netip.Addr
	// ipvs is the worker's IPVS handle, stats a second one for status
	// reads, which run in the status server's goroutines, one at a time
	// (statsMu): a netlink socket answers one request at a time.
	ipvs, stats IPVS
	statsMu     sync.Mutex
	closers     []func()
	ipt         IPTables         // nil unless the fwmark guard is on
	conn        *ipv4.PacketConn // sends adverts; receives nothing (a filter drops all)
	ads         *afpacket.Conn   // receives adverts with the sender's MAC
	dst         netip.Addr       // where adverts go: 224.0.0.18 or the unicast peer
	fsm         Machine
	// work runs what may block (iptables, IPVS, sync daemons) off the VRRP
	// loop; transmit sends an advert and announce a VIP (gratuitous ARP),
	// both without blocking the loop. Unit tests replace them.
	work *worker
	// wantSync is the VRRP state the sync daemons should follow (guard
	// backup-only); synced the one they do, the worker's own.
	wantSync   atomic.Int32
	synced     State
	switchSync func(SyncDaemon) error // switchSyncDaemon; unit tests replace it
	transmit   func(Advert) error
	announce   func(v netip.Addr, held func() bool)
	// vipGen counts VIP additions and removals: an announcement goes on
	// only while the generation it started in holds. announced is when
	// the VIPs were last announced (vrrp.garp_refresh).
	vipGen    atomic.Uint64
	announced time.Time
	crashed   chan error // a goroutine's panic (spawn)
	started   bool       // the loop ran: VIPs may be up
	// peerMAC is the MAC the guard excludes (nil while unknown), and
	// peerFrom where it came from: "config", "adverts" or "neighbour".
	peerMAC  net.HardwareAddr
	peerFrom string
	// health of each realserver, by [service, realserver] index.
	health map[[2]int]*Health
	down   map[[2]int]bool
	// backupOnly is net.ipv4.vs.backup_only as found, restored on stop
	// (guard mode backup-only).
	backupOnly []byte

	// For the status: the last state change, how many, the MASTER heard
	// last, each realserver's last check.
	since       time.Time
	transitions int
	master      netip.Addr
	lastCheck   map[[2]int]string
	asks        chan chan Status
	// The guard rule in force, kept by the worker.
	guardMu   sync.Mutex
	guardRule string
	guardSet  bool // guardRule is in force
}

// Netlink is the subset of *netlink.Handle the daemon uses (interface,
// addresses, neighbours); unit tests fake it.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
}

var _ Netlink = (*netlink.Handle)(nil)

const backupOnlySysctl = "/proc/sys/net/ipv4/vs/backup_only"

// Run starts the director and blocks until ctx ends, then shuts down
// cleanly: priority-0 advert, VIP, IPVS services and guard removed.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) (err error) {
	d := &Daemon{cfg: cfg, log: log, crashed: make(chan error, 1), switchSync: switchSyncDaemon}
	d.work = newWorker(d.spawn)
	// Whatever setup installed before failing is removed too, also after
	// a panic here or in any of the daemon's goroutines (spawn).
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, p, debug.Stack())
		}
		err = errors.Join(err, d.teardown())
	}()
	if err := d.setup(); err != nil {
		return err
	}
	recv := make(chan received, 8)
	d.spawn(func() { d.receive(recv) })
	checks := make(chan checkResult, 16)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the checks before the teardown
	if err := runChecks(ctx, cfg, checks, d.spawn); err != nil {
		return err
	}
	d.asks = make(chan chan Status)
	srv, err := serveStatus(cfg.Status, d.ask)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("starting", "priority", d.fsm.Priority, "guard", cfg.Guard.Mode)
	return d.loop(ctx, recv, checks)
}

// ErrPanic is wrapped by the error Run returns after a panic, once it has
// removed what it installed.
var ErrPanic = errors.New("director panicked")

// spawn runs fn in a goroutine whose panic ends the daemon through its
// loop, so the teardown still runs: a goroutine's panic would otherwise
// kill the process with the VIP, the IPVS services and the guard left in
// place.
func (d *Daemon) spawn(fn func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				select {
				case d.crashed <- fmt.Errorf("%w: %v\n%s", ErrPanic, p, debug.Stack()):
				default: // one is enough
				}
			}
		}()
		fn()
	}()
}

// loop is the VRRP loop: timers, adverts, state changes and the VIP. It
// never waits on anything slow; that goes to the worker. It ends with ctx,
// or with the panic of one of the daemon's goroutines.
func (d *Daemon) loop(ctx context.Context, recv <-chan received, checks <-chan checkResult) error {
	d.started = true
	d.transition("start", func(m *Machine) []Action { return m.Start(time.Now()) })
	for {
		wait := time.Until(d.fsm.Deadline())
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			d.transition("shutdown", (*Machine).Shutdown)
			return nil
		case err := <-d.crashed:
			timer.Stop()
			d.transition("panic", (*Machine).Shutdown)
			return err
		case r := <-recv:
			timer.Stop()
			d.heard(r)
			if r.advert.Priority > 0 {
				d.master = r.src
			}
			d.transition(fmt.Sprintf("advert from %s priority %d", r.src, r.advert.Priority),
				func(m *Machine) []Action { return m.Receive(time.Now(), r.advert, r.src) })
		case <-timer.C:
			d.transition("timer", func(m *Machine) []Action { return m.Tick(time.Now()) })
			d.refreshVIPs(time.Now())
		case cr := <-checks:
			timer.Stop()
			d.checked(cr)
			d.lookForPeer()
		case reply := <-d.asks:
			timer.Stop()
			reply <- d.snapshot()
		}
	}
}

// ask gets a Status for the status server: the loop's state from the
// loop, then the kernel's side (IPVS counters, sync daemons, the guard
// rule) read here, in the server's goroutine.
func (d *Daemon) ask(ctx context.Context) (Status, error) {
	reply := make(chan Status, 1)
	select {
	case d.asks <- reply:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	select {
	case st := <-reply:
		d.kernelStatus(&st)
		return st, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// transition feeds the state machine one event, logs a state change with
// its reason, and performs the actions. A new state is prepared (guard,
// sync daemon) after the adverts, which tell the peer at once, and before
// the VIP moves, which draws traffic. The preparing runs on the worker, so
// the VIP may arrive first: a new MASTER then serves its first
// connections itself for as long as the iptables execs take (no loop: a
// MASTER's own traffic is never forwarded back to it).
func (d *Daemon) transition(reason string, event func(*Machine) []Action) {
	before := d.fsm.State()
	actions := event(&d.fsm)
	after := d.fsm.State()
	changed := after != before
	if changed {
		d.log.Info("vrrp state change", "from", before, "to", after, "reason", reason)
		d.since, d.transitions = time.Now(), d.transitions+1
	}
	for _, a := range actions {
		if changed && (a == AddVIP || a == DelVIP) {
			d.entered(after)
			changed = false
		}
		d.act(a)
	}
	if changed {
		d.entered(after)
	}
}

// entered prepares a new VRRP state, on the worker: the guard rule, which
// may depend on it, and in guard mode backup-only the sync daemon: with
// backup_only=1 a box whose backup daemon runs does not balance what the
// MASTER forwards.
func (d *Daemon) entered(s State) {
	d.queueGuard()
	if d.cfg.Guard.Mode != GuardBackupOnly || s == Initialize {
		return
	}
	d.wantSync.Store(int32(s))
	d.work.do(d.syncDaemons)
}

// syncDaemons, on the worker, brings the IPVS sync daemons to the VRRP
// state the box is in now: a flap queues a switch per state, and the
// stale ones are skipped. A switch the kernel failed is retried every
// second until it holds: once, beside six labs under TCG, stopping the
// master daemon waited a minute and failed (EAGAIN), and the BACKUP,
// which had no backup daemon, stayed unguarded.
func (d *Daemon) syncDaemons() {
	s := State(d.wantSync.Load())
	if s == d.synced {
		return
	}
	sd := SyncDaemon{State: SyncMaster, Interface: d.cfg.VRRP.Interface, SyncID: uint32(d.cfg.VRRP.VRID)}
	if s == Backup {
		sd.State = SyncBackup
	}
	if err := d.switchSync(sd); err != nil {
		d.log.Error("ipvs sync daemon", "err", err, "retry_in", time.Second)
		time.AfterFunc(time.Second, func() { d.work.do(d.syncDaemons) })
		return
	}
	d.synced = s
	d.log.Info("ipvs sync daemon", "daemon", sd.String())
}

func (d *Daemon) setup() error {
	cfg := d.cfg
	var err error
	if d.nl == nil {
		if d.nl, err = netlink.NewHandle(); err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
	}
	if d.link, err = d.nl.LinkByName(cfg.VRRP.Interface); err != nil {
		return fmt.Errorf("vrrp interface %s: %w", cfg.VRRP.Interface, err)
	}
	if d.ifi, err = net.InterfaceByName(cfg.VRRP.Interface); err != nil {
		return err
	}
	seen := map[netip.Addr]bool{}
	for _, s := range cfg.Services {
		if v := s.VIP.Addr; !seen[v] {
			seen[v] = true
			d.vips = append(d.vips, v)
		}
	}
	addrs, err := d.nl.AddrList(d.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", cfg.VRRP.Interface, err)
	}
	for _, a := range addrs {
		p, _ := netip.AddrFromSlice(a.IP)
		if !seen[p.Unmap()] {
			ones, _ := a.Mask.Size()
			d.addr = netip.PrefixFrom(p.Unmap(), ones)
			break
		}
	}
	if !d.addr.IsValid() {
		return fmt.Errorf("%s has no IPv4 address of its own", cfg.VRRP.Interface)
	}
	d.initState()
	// moby/ipvs opens a handle even where the kernel has no IPVS, and its
	// calls then fail silently: ask for IPVS's netlink family first.
	// Where ip_vs is a module not yet loaded, load it, as keepalived does.
	if _, err := netlink.GenlFamilyGet("IPVS"); err != nil {
		out, merr := exec.Command("modprobe", "ip_vs").CombinedOutput()
		if _, err2 := netlink.GenlFamilyGet("IPVS"); err2 != nil {
			return fmt.Errorf("kernel IPVS is not available here (%v; modprobe ip_vs: %v %s): see lvslab kernel info", err, merr, bytes.TrimSpace(out))
		}
	}
	k, err := OpenKernel()
	if err != nil {
		return err
	}
	d.ipvs, d.closers = k, append(d.closers, k.Close)
	sh, err := ipvs.New("")
	if err != nil {
		return fmt.Errorf("ipvs: %w", err)
	}
	d.stats, d.closers = sh, append(d.closers, sh.Close)
	switch cfg.Guard.Mode {
	case GuardFwmark:
		ipt, err := iptables.New()
		if err != nil {
			return fmt.Errorf("iptables: %w (install iptables)", err)
		}
		d.ipt = ipt
		if cfg.Guard.PeerMAC.HardwareAddr != nil {
			d.peerMAC, d.peerFrom = cfg.Guard.PeerMAC.HardwareAddr, "config"
		} else {
			d.log.Info("guard learns the peer's MAC from its VRRP adverts")
		}
		if err := d.applyGuard(d.fsm.State(), d.peerMAC); err != nil {
			return err
		}
	case GuardBackupOnly:
		if d.backupOnly, err = os.ReadFile(backupOnlySysctl); err != nil {
			return fmt.Errorf("guard mode backup-only: %w", err)
		}
		if err := os.WriteFile(backupOnlySysctl, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("guard mode backup-only: %w", err)
		}
	case GuardNone:
		d.log.Warn("guard mode none: the BACKUP re-balances what the MASTER forwards (the ping-pong loop); use it only to reproduce the bug")
	}
	c, err := d.Reconcile()
	if err != nil {
		return err
	}
	d.log.Info("ipvs reconciled", "changes", fmt.Sprintf("%+v", c))
	pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
	if err != nil {
		return fmt.Errorf("vrrp socket: %w", err)
	}
	d.conn = ipv4.NewPacketConn(pc)
	d.transmit = d.send
	d.announce = func(v netip.Addr, held func() bool) {
		d.spawn(func() {
			if err := GratuitousARP(d.ifi, v, 3, held); err != nil {
				d.log.Error("gratuitous ARP", "err", err)
			}
		})
	}
	d.dst = VRRPGroup
	if cfg.VRRP.UnicastPeer.IsValid() {
		d.dst = cfg.VRRP.UnicastPeer.Addr
	}
	if d.ads, err = listenAdverts(d.ifi); err != nil {
		return err
	}
	for _, f := range []func() error{
		func() error { return d.conn.SetBPF(dropAll) },
		func() error { return d.conn.JoinGroup(d.ifi, &net.IPAddr{IP: VRRPGroup.AsSlice()}) },
		func() error { return d.conn.SetMulticastInterface(d.ifi) },
		func() error { return d.conn.SetMulticastTTL(255) }, // RFC 5798 5.1.1.3
		func() error { return d.conn.SetMulticastLoopback(false) },
	} {
		if err := f(); err != nil {
			return fmt.Errorf("vrrp socket: %w", err)
		}
	}
	return nil
}

// initState sets up what the loop keeps: the state machine, and each
// realserver's health, all up.
func (d *Daemon) initState() {
	d.health, d.down, d.lastCheck = map[[2]int]*Health{}, map[[2]int]bool{}, map[[2]int]string{}
	for i, s := range d.cfg.Services {
		for j, r := range s.Realservers {
			d.health[[2]int{i, j}] = &Health{Rise: r.Check.Rise, Fall: r.Check.Fall}
		}
	}
	v := d.cfg.VRRP
	d.fsm = Machine{Priority: uint8(v.Priority), AdvertInt: v.AdvertInt, Preempt: *v.Preempt, PreemptDelay: v.PreemptDelay, Addr: d.addr.Addr()}
}

// applyGuard installs the guard rule for what is known now. With the
// peer's MAC: mark VIP traffic unless it comes from that MAC, in every
// state. Without it (learning, nothing found yet): a MASTER marks all VIP
// traffic, so it balances; anyone else marks nothing, so it serves what
// reaches it locally. A BACKUP hears the MASTER's adverts, so it knows the
// MASTER's MAC before it could re-balance; a MASTER finds its BACKUP's in
// the neighbour table after the first health check (lookForPeer), so a
// crash leaves no mark-all rule behind past the first seconds.
func (d *Daemon) applyGuard(state State, peer net.HardwareAddr) error {
	if d.ipt == nil {
		return nil
	}
	var g *Guard // nil: no rule
	if peer != nil || state == Master {
		s := d.cfg.Services[0]
		g = &Guard{VIP: s.VIP.Addr, Port: uint16(s.Port), Protocol: s.Protocol, PeerMAC: peer, Mark: d.cfg.Guard.Mark, Mask: d.cfg.Guard.Mask}
	}
	want := ""
	if g != nil {
		want = strings.Join(g.Rule(), " ")
	}
	// Checking costs several iptables execs (over a second on a loaded
	// VM), and every transition asks: a rule this daemon put in force is
	// not checked again.
	// Only the worker (and setup, before it) writes the rule; the lock is
	// for status readers, which never wait on an exec.
	d.guardMu.Lock()
	inForce := d.guardSet && want == d.guardRule
	d.guardMu.Unlock()
	if inForce {
		return nil
	}
	var err error
	if g == nil {
		err = RemoveGuard(d.ipt)
	} else {
		var changed bool
		if changed, err = EnsureGuard(d.ipt, *g); changed {
			d.log.Info("guard installed", "rule", want)
		}
	}
	d.guardMu.Lock()
	d.guardSet = err == nil
	if err == nil {
		d.guardRule = want
	}
	d.guardMu.Unlock()
	return err
}

// heard learns the peer's MAC from an advert, in fwmark mode without a
// configured peer_mac; a changed MAC re-installs the rule. Adverts are the
// authority: they replace a MAC found in the neighbour table. Only adverts
// from a possible peer count (unicast_peer, or a realserver that is not
// this box): VRRP adverts are unauthenticated, and any host on the segment
// could otherwise choose whose traffic this box re-balances.
func (d *Daemon) heard(r received) {
	switch {
	case d.ipt == nil || d.peerFrom == "config":
	case !slices.Contains(d.peers(), r.src):
		d.log.Debug("advert from a host that is no peer: its MAC is not learned", "src", r.src, "mac", r.mac.String())
	case bytes.Equal(r.mac, d.peerMAC):
		d.peerFrom = "adverts" // confirmed
	default:
		d.learnPeer(r.mac, "adverts", "peer", r.src)
	}
}

// peers are the addresses the other director may have: the unicast peer
// if configured, else every realserver that is not this box or a VIP.
func (d *Daemon) peers() []netip.Addr {
	if p := d.cfg.VRRP.UnicastPeer; p.IsValid() {
		return []netip.Addr{p.Addr}
	}
	var out []netip.Addr
	for _, s := range d.cfg.Services {
		for _, r := range s.Realservers {
			if a := r.Address.Addr; a != d.addr.Addr() && !slices.Contains(d.vips, a) && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// lookForPeer fills in the peer's MAC when adverts have not told it: a
// MASTER hears no adverts from its BACKUP. In the two-box layout the peer
// director is the one realserver that is not this box, and the health
// checks have made the kernel resolve its MAC: take it from the
// neighbour table. With more candidates it guesses nothing.
func (d *Daemon) lookForPeer() {
	if d.ipt == nil || d.peerMAC != nil {
		return
	}
	others := d.peers()
	if len(others) != 1 {
		return
	}
	neighs, err := d.nl.NeighList(d.ifi.Index, netlink.FAMILY_V4)
	if err != nil {
		return
	}
	for _, n := range neighs {
		usable := n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0
		if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == others[0] && usable && len(n.HardwareAddr) == 6 {
			d.learnPeer(n.HardwareAddr, "neighbour", "realserver", others[0])
			return
		}
	}
}

func (d *Daemon) learnPeer(mac net.HardwareAddr, from, role string, addr netip.Addr) {
	d.log.Info("peer MAC learned", "from", from, role, addr, "mac", mac.String(), "was", d.peerMAC.String())
	d.peerMAC, d.peerFrom = mac, from
	d.queueGuard()
}

// queueGuard has the worker put in force the guard rule for the state and
// peer MAC known now.
func (d *Daemon) queueGuard() {
	state, peer := d.fsm.State(), slices.Clone(d.peerMAC)
	d.work.do(func() {
		if err := d.applyGuard(state, peer); err != nil {
			d.log.Error("guard", "err", err)
		}
	})
}

// Reconcile installs the configured IPVS table, adopting what is there.
// It owns every address service on a managed VIP, not only the configured
// ones: a service an earlier run left with another config (VIP:3306 after
// a restart with the fwmark guard) would take the unmarked traffic the
// peer forwards and re-balance it, the very loop the guard prevents.
func (d *Daemon) Reconcile() (Changes, error) {
	want := d.cfg.Desired()
	table, err := ReadTable(d.ipvs)
	if err != nil {
		return Changes{}, err
	}
	return ReconcileFrom(d.ipvs, table, append(ServicesOn(table, d.vips), want...), want)
}

// checked applies a health check result: a realserver that turned down is
// quiesced or removed, one that came back is restored.
func (d *Daemon) checked(cr checkResult) {
	key := [2]int{cr.svc, cr.rs}
	d.lastCheck[key] = "ok"
	if cr.err != nil {
		d.lastCheck[key] = cr.err.Error()
	}
	h := d.health[key]
	if !h.Observe(cr.err == nil) {
		return
	}
	d.down[key] = !h.Up()
	rs := d.cfg.Services[cr.svc].Realservers[cr.rs]
	reason := "check passed"
	if cr.err != nil {
		reason = cr.err.Error()
	}
	d.log.Info("realserver health", "realserver", rs.Address, "up", h.Up(), "on_fail", rs.Check.OnFail, "reason", reason)
	want := d.cfg.DesiredWith(maps.Clone(d.down))
	d.work.do(func() {
		c, err := Reconcile(d.ipvs, d.cfg.Desired(), want)
		if err != nil {
			d.log.Error("ipvs reconcile after health change", "err", err)
			return
		}
		d.log.Info("ipvs reconciled", "changes", fmt.Sprintf("%+v", c))
	})
}

type received struct {
	advert Advert
	src    netip.Addr
	mac    net.HardwareAddr
}

// dropAll is a socket filter that accepts nothing.
var dropAll, _ = bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})

// receive reads adverts: TTL 255 (RFC 5798 7.1), to the group or to us
// (unicast), our VRID.
func (d *Daemon) receive(out chan<- received) {
	buf := make([]byte, 1500)
	for {
		p, mac, err := readAdvert(d.ads, buf)
		if err != nil {
			return // closed by teardown
		}
		if p.TTL != 255 || p.Dst != VRRPGroup && p.Dst != d.addr.Addr() {
			continue
		}
		a, err := ParseAdvert(p.Src, p.Dst, p.Payload)
		if err != nil {
			d.log.Debug("dropped advert", "src", p.Src, "err", err)
			continue
		}
		if int(a.VRID) == d.cfg.VRRP.VRID {
			out <- received{a, p.Src, mac}
		}
	}
}

func (d *Daemon) act(a Action) {
	var err error
	switch a {
	case SendAdvert:
		err = d.transmit(d.advert(d.fsm.Priority))
	case SendAdvertZero:
		err = d.transmit(d.advert(0))
	case AddVIP:
		err = d.addVIPs()
	case DelVIP:
		err = d.delVIPs()
	}
	if err != nil {
		d.log.Error("vrrp action failed", "action", a, "err", err)
	}
}

func (d *Daemon) advert(prio uint8) Advert {
	return Advert{VRID: uint8(d.cfg.VRRP.VRID), Priority: prio, Interval: d.cfg.VRRP.AdvertInt, Addrs: d.vips}
}

func (d *Daemon) send(a Advert) error {
	_, err := d.conn.WriteTo(a.Marshal(d.addr.Addr(), d.dst), nil, &net.IPAddr{IP: d.dst.AsSlice()})
	return err
}

func (d *Daemon) vipAddr(v netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: v.AsSlice(), Mask: net.CIDRMask(d.addr.Bits(), 32)}}
}

// addVIPs puts the VIPs on the interface and announces them with
// gratuitous ARP (in the background: 200 ms of pauses), so the client and
// switch learn our MAC at once. The announcements stop when the VIPs go:
// a MASTER that yields at once must not go on claiming the VIP for the
// peer that now holds it.
func (d *Daemon) addVIPs() error {
	held := d.heldWhile(d.vipGen.Add(1))
	d.announced = time.Now()
	var errs []error
	for _, v := range d.vips {
		if err := d.nl.AddrAdd(d.link, d.vipAddr(v)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add VIP %s on %s: %w", v, d.ifi.Name, err))
			continue
		}
		d.announce(v, held)
	}
	return errors.Join(errs...)
}

// refreshVIPs announces the VIPs again when vrrp.garp_refresh has passed
// since the last announcement and we are MASTER. The loop calls it on
// its timer, which while MASTER fires for every advert.
func (d *Daemon) refreshVIPs(now time.Time) {
	every := d.cfg.VRRP.GARPRefresh
	if every == 0 || d.fsm.State() != Master || now.Sub(d.announced) < every {
		return
	}
	d.announced = now
	held := d.heldWhile(d.vipGen.Load())
	for _, v := range d.vips {
		d.announce(v, held)
	}
}

// heldWhile is an announcement's test that the VIPs it announces are still
// held: no VIP addition or removal since generation gen.
func (d *Daemon) heldWhile(gen uint64) func() bool {
	return func() bool { return d.vipGen.Load() == gen }
}

func (d *Daemon) delVIPs() error {
	d.vipGen.Add(1) // ends the announcements under way
	var errs []error
	for _, v := range d.vips {
		if err := d.nl.AddrDel(d.link, d.vipAddr(v)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("delete VIP %s from %s: %w", v, d.ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

// teardown removes what setup and the loop installed: VIPs, IPVS
// services, guard, sync daemons; it logs what it removed, and nothing
// when setup failed before installing anything. The worker's queued jobs
// run first, so none installs anything afterwards.
func (d *Daemon) teardown() error {
	d.work.close()
	var errs []error
	var removed []string
	if d.conn != nil {
		d.conn.Close()
	}
	if d.ads != nil {
		d.ads.Close()
	}
	if d.started {
		errs = append(errs, d.delVIPs())
		removed = append(removed, "VIPs")
	}
	if d.ipvs != nil {
		if _, err := Reconcile(d.ipvs, d.cfg.Desired(), nil); err != nil {
			errs = append(errs, err)
		}
		removed = append(removed, "IPVS services")
	}
	for _, c := range d.closers {
		c()
	}
	if d.ipt != nil {
		errs = append(errs, RemoveGuard(d.ipt))
		removed = append(removed, "guard")
	}
	if d.backupOnly != nil {
		for _, s := range []SyncState{SyncMaster, SyncBackup} {
			if err := StopSyncDaemon(s); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, os.WriteFile(backupOnlySysctl, d.backupOnly, 0o644))
		removed = append(removed, "sync daemons", "backup_only restored")
	}
	if len(removed) > 0 {
		d.log.Info("stopped: removed what it installed", "removed", strings.Join(removed, ", "))
	}
	return errors.Join(errs...)
}

// garpFrame is an RFC 5227 announcement of addr from mac: a broadcast
// ARP request whose sender and target protocol address are both addr.
func garpFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	ip := addr.AsSlice()
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: mac, SourceProtAddress: ip, DstHwAddress: make([]byte, 6), DstProtAddress: ip}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp)
	return buf.Bytes(), err
}

// GratuitousARP broadcasts n ARP requests for addr from ifi's MAC (RFC
// 5227 announcements), one every 100 ms, each only while held says the
// address is still ours.
func GratuitousARP(ifi *net.Interface, addr netip.Addr, n int, held func() bool) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(afpacket.Htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("gratuitous ARP socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: afpacket.Htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], layers.EthernetBroadcast)
	frame, err := garpFrame(ifi.HardwareAddr, addr)
	if err != nil {
		return fmt.Errorf("gratuitous ARP for %s: %w", addr, err)
	}
	for i := range n {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if !held() {
			return nil
		}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("gratuitous ARP for %s on %s: %w", addr, ifi.Name, err)
		}
	}
	return nil
}
