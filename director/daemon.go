package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"

	"github.com/lvslab/lvslab/lab/afpacket"
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
	// The guard rule and the peer REDIRECTs in force, kept by the worker.
	guardMu        sync.Mutex
	guardRule      string
	guardRedirects []string
	guardSet       bool // they are in force
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
	return reconcileFrom(d.ipvs, table, append(servicesOn(table, d.vips), want...), want)
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
		a, err := parseAdvert(p.Src, p.Dst, p.Payload)
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
