package scenarios

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/director/afpacket"
	"github.com/lvslab/lvslab/lab"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Verdict is what the observers saw.
type Verdict string

// Verdicts.
const (
	Loop  Verdict = "LOOP"
	Clean Verdict = "CLEAN"
	// NoBalance: no loop, but fewer boxes served than should have (the
	// passive box's realserver got nothing).
	NoBalance Verdict = "NO-BALANCE"
	// Unstable: repeated runs of one cell disagreed (see Tally).
	Unstable Verdict = "UNSTABLE"
	// Error: the run failed before the observers could judge (a lab that
	// did not come up, a spec that timed out); Reason says how.
	Error Verdict = "ERROR"
	// Unserved: connections failed, but nothing showed a loop (no bounce,
	// no ICMP time exceeded, no passive count beyond the clients'): the
	// host or the harness failed them. Never what a cell expects; Reason
	// names the failures' causes.
	Unserved Verdict = "UNSERVED"
)

// Event is what happens to the MASTER's director before the traffic.
type Event string

// Events; each is also the scenario's name.
const (
	Steady Event = "steady-state"
	// FailoverStop stops the MASTER's director gracefully: it removes its
	// VIP and IPVS rules, the BACKUP takes over.
	FailoverStop Event = "failover-stop"
	// FailoverKill SIGKILLs it: its VIP and IPVS rules stay behind while
	// the BACKUP takes over, so the old MASTER is now the passive box that
	// re-balances what the new MASTER forwards, unless guarded.
	FailoverKill Event = "failover-kill"
	// MySQLDown stops the passive box's mariadbd (and any built-in
	// backend it runs): health checks must take it out of both
	// directors' tables, and the active box serves alone.
	MySQLDown Event = "mysql-down"
	// Switchover is a VRRP-only failover: the BACKUP's director restarts
	// with a priority above the MASTER's and preempts; the old MASTER
	// keeps running as BACKUP with its IPVS rules loaded, the passive box
	// that would loop in reverse.
	Switchover Event = "vrrp-switchover"
	// Failback: the MASTER's director is SIGKILLed, the BACKUP takes over,
	// then the MASTER's director restarts and preempts back; the BACKUP
	// keeps its rules.
	Failback Event = "failback"
	// Reconfigure: both directors start without a fix; each is SIGKILLed
	// (a crash, an upgrade) and started again with the cell's fix, the
	// BACKUP first. What the first config installed must not survive:
	// a VIP:port service left beside the fwmark one re-balances the
	// unmarked traffic the peer forwards.
	Reconfigure Event = "reconfigure"

	// Adversity: the network or the host misbehaves. The write workload
	// runs across each; the verdict is on the pair after it converged,
	// and Failover is the convergence: from the heal (or the thaw) to
	// the MASTER alone holding the VIP.

	// SplitBrain cuts VRRP between the two directors (the bridge drops
	// each one's adverts to the other) until the BACKUP has held the VIP
	// beside the MASTER for splitBrainFor, then heals.
	SplitBrain Event = "split-brain"
	// AdvertLoss10, 30 and 50 lose that share of the MASTER's adverts to
	// the BACKUP for advertLossFor: three in a row lost and the BACKUP
	// takes the VIP until the next one arrives.
	AdvertLoss10 Event = "advert-loss-10"
	AdvertLoss30 Event = "advert-loss-30"
	AdvertLoss50 Event = "advert-loss-50"
	// Frozen stops the MASTER's director (SIGSTOP, its whole process
	// group) for frozenFor, then thaws it (SIGCONT): its kernel state
	// works on while it sleeps; the BACKUP takes the VIP, and gives it
	// back when the thawed MASTER's adverts resume.
	Frozen Event = "master-frozen"
	// Isolated cuts the MASTER off from everything (every frame to and
	// from it lost) until the BACKUP has held the VIP for isolatedFor,
	// then heals: a split brain whose MASTER no client reaches.
	Isolated Event = "master-isolated"
	// ClientCut loses every frame between the client and the MASTER for
	// clientCutFor: VRRP goes on, so nothing fails over and the client
	// has no VIP meanwhile.
	ClientCut Event = "client-cut"
	// FailoverDelayed is FailoverKill with 100 ms ± 50 ms of delay
	// between the two boxes (every frame one sends the other), healed
	// once the BACKUP holds the VIP.
	FailoverDelayed Event = "failover-delayed"
	// MySQLFlap stops and starts the passive box's servers (its mariadbd,
	// on the data it left, and any built-in backend) while the reads run:
	// down for flapFor, then, once both directors' health checks send to
	// it again, up for flapFor; flapCycles times, the reads paced across
	// all of them. A connection that fails while they are down (refused,
	// or closed by the stopping server) is the flap's doing, not loop
	// evidence.
	MySQLFlap Event = "mysql-flap"
)

// Events lists every event.
var Events = []Event{Steady, FailoverStop, FailoverKill, MySQLDown, Switchover, Failback, Reconfigure,
	SplitBrain, AdvertLoss10, AdvertLoss30, AdvertLoss50, Frozen, Isolated, ClientCut, FailoverDelayed, MySQLFlap}

// Adversity are the events where the network or the host misbehaves.
var Adversity = []Event{SplitBrain, AdvertLoss10, AdvertLoss30, AdvertLoss50, Frozen, Isolated, ClientCut, FailoverDelayed, MySQLFlap}

// How long the adversity events last.
const (
	splitBrainFor = 5 * time.Second
	advertLossFor = 10 * time.Second
	frozenFor     = 5 * time.Second
	isolatedFor   = 5 * time.Second
	clientCutFor  = 5 * time.Second
	flapFor       = 2 * time.Second
	flapCycles    = 2
	// flapEvery paces the reads across a flap, which go on until its
	// last cycle ends.
	flapEvery = 300 * time.Millisecond
)

// vrrpProtocol is VRRP's IP protocol number.
const vrrpProtocol = 112

// advertLoss is an AdvertLoss event's share of adverts lost, in percent.
func advertLoss(ev Event) float64 {
	switch ev {
	case AdvertLoss10:
		return 10
	case AdvertLoss30:
		return 30
	case AdvertLoss50:
		return 50
	}
	return 0
}

// Expected is the one table of expected outcomes. Without a guard, the
// passive director re-balances what the active one forwards (LOOP), unless
// a graceful stop left it no rules; the fwmark guard is CLEAN throughout;
// backup_only and REDIRECT do not guard a box whose director was SIGKILLed
// as MASTER. The same for every implementation. Findings explains each
// outcome that contradicted a first expectation; the REDIRECT fix through a
// switchover is not in the suite (see there).
func Expected(fix Fix, ev Event) Verdict {
	// The adversity events end as the plain events they come down to:
	// the pair converged back to its MASTER (a frozen one returns like a
	// failback), or a failover by SIGKILL.
	if (ev == SplitBrain || ev == Isolated) && (fix == FixBackupOnly || fix == FixRedirect) {
		// The clients stay with the box that yielded (no gratuitous ARP
		// from the MASTER, see Findings), which under these fixes serves
		// them itself rather than balance.
		return NoBalance
	}
	switch ev {
	case SplitBrain, AdvertLoss10, AdvertLoss30, AdvertLoss50, Isolated, ClientCut, MySQLFlap:
		ev = Steady
	case Frozen:
		ev = Failback
	case FailoverDelayed:
		ev = FailoverKill
	}
	switch {
	case ev == MySQLDown:
		return Clean // nothing is forwarded to the other box any more
	case fix == FixNone && ev != FailoverStop:
		return Loop // steady state, and whenever the passive box keeps its rules
	case (fix == FixBackupOnly || fix == FixRedirect) && ev == FailoverKill:
		return Loop
	}
	return Clean
}

// clientsMayStay: after an event in which the BACKUP may take the VIP and
// yield it again, clients whose ARP entry still names it send to it until
// the entry fails or a gratuitous ARP moves it (Findings); under
// backup_only or REDIRECT that box serves them itself. Whether they still
// do at the reads is the clients' neighbour timers, not the pair: such a
// cell passes as CLEAN, or as NO-BALANCE when the capture saw clients send
// to the passive box, whichever of the two Expected names.
func clientsMayStay(fix Fix, ev Event) bool {
	return (fix == FixBackupOnly || fix == FixRedirect) && (ev == SplitBrain || ev == Isolated || advertLoss(ev) > 0)
}

// Options bound a scenario's workload.
type Options struct {
	Connections int // client connections (default 40)
	Parallel    int // at once (default 8)
	// DialTimeout bounds a read connection's TCP connect: one SYN
	// retransmission (after 1 s) is allowed, a SYN lost in the loop
	// without an ICMP answer (the kernel rate-limits them) is not.
	DialTimeout time.Duration // default 1.5s
	Timeout     time.Duration // per connection: each read and write (default 2s)
	RunDir      string        // for the scenario's lab (default lab.DefaultRunDir)
	CaptureDir  string        // where to write the bridge capture as pcap; "" for none
	// Expected replaces the table's expectation (Expected) for a
	// configuration known to differ, e.g. one that does not balance.
	Expected Verdict
	Progress io.Writer
	// Service is what the workload asks for: MySQL on its port (the
	// default), or a built-in backend on another.
	Service Service
	// Backends are the other services the boxes serve (a pair with
	// several), so that their checkers find every realserver up.
	Backends []Service
	// Rate, when set, paces the read workload: Connections new
	// connections, one every 1/Rate s whatever the earlier ones do (an
	// open loop, as independent clients arrive). Load curves use it.
	Rate int
	// SingleDirector runs the first director only, the second box as a
	// realserver: the load curve's reference.
	SingleDirector bool
	// Bound, when set, bounds the run once its lab is built: the time the
	// lab waited for admission (lab.Admit) before that is not counted.
	Bound time.Duration
}

func (o *Options) defaults() {
	if o.Connections == 0 {
		o.Connections = 40
	}
	if o.Service.Backend == "" {
		o.Service.Backend = BackendMySQL
	}
	if o.Parallel == 0 {
		o.Parallel = 8
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 1500 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Result is one scenario run: verdict, expectation and the evidence.
type Result struct {
	// Cell names the result in a suite (the conformance spec's text); in
	// a merged report, Shard, Host and Kernel say where it ran.
	Cell   string `json:"cell,omitempty"`
	Shard  string `json:"shard,omitempty"`
	Host   string `json:"host,omitempty"`
	Kernel string `json:"kernel,omitempty"`

	// Service names the virtual service of a pair with several.
	Service        string  `json:"service,omitempty"`
	Scenario       Event   `json:"scenario"`
	Implementation string  `json:"implementation"`
	Fix            Fix     `json:"fix"`
	Verdict        Verdict `json:"verdict"`
	Expected       Verdict `json:"expected"`
	Pass           bool    `json:"pass"`
	Reason         string  `json:"reason"`

	Connections int `json:"connections"`
	Served      int `json:"served"`
	Hung        int `json:"hung"`
	Errors      int `json:"errors"`
	// Share counts connections by the @@server_id that served them.
	Share map[int]int `json:"share"`
	// Evidence, per director or bridge port, over the traffic only.
	IPVS         map[string]IPVSCounters `json:"ipvs"`
	TimeExceeded map[string]uint64       `json:"icmp_time_exceeded"`
	Frames       map[string]PortFrames   `json:"bridge_frames"`

	// Failover is how long the event took to take effect: the BACKUP
	// holding the VIP, or the dead realserver out of both tables.
	Failover time.Duration `json:"failover_ns,omitempty"`
	Setup    time.Duration `json:"setup_ns"`
	// Admission is how long the lab waited for admission (lab.Admit)
	// while it was built: part of Setup, not of any bound.
	Admission time.Duration `json:"admission_ns"`
	Traffic   time.Duration `json:"traffic_ns"`
	Conns     []Conn        `json:"conns"`
	// Timeline samples the bridge every 100 ms during the traffic, from
	// TimelineStart (its samples' At count from there).
	Timeline      []Sample  `json:"timeline"`
	TimelineStart time.Time `json:"timeline_start"`
	// Bounces is what a capture on the bridge saw during the traffic, and
	// Pcap the file it was written to, if any.
	Bounces *Bounces      `json:"bounces,omitempty"`
	Capture *CaptureStats `json:"capture,omitempty"`
	// PassiveFromClients counts the segments to VIP:port the capture saw
	// reach the passive box from clients (not from a director).
	PassiveFromClients *uint64 `json:"passive_from_clients,omitempty"`
	Pcap               string  `json:"pcap,omitempty"`
	// SyncDaemons are the IPVS sync daemons each director ran after the
	// traffic, under the backup-only fix.
	SyncDaemons map[string][]director.SyncDaemon `json:"sync_daemons,omitempty"`
	// Writes is the write workload across a failover (failover and
	// adversity events).
	Writes *WriteStats `json:"writes,omitempty"`
	// Takeovers counts the times the BACKUP took the VIP during an
	// adversity event.
	Takeovers *int `json:"backup_takeovers,omitempty"`
	// Outages are when a flapping box's servers were down (MySQLFlap):
	// from each stop to both directors sending to it again. DownErrors
	// counts the connections refused or closed (Conn.Refused) that
	// overlapped one.
	Outages    []Outage `json:"outages,omitempty"`
	DownErrors int      `json:"down_errors,omitempty"`
	// Load: the paced workload's rate (connections/s; 0 for the plain
	// read workload), the served connections' latency percentiles,
	// frames on the directors' bridge ports per connection, and the
	// machine's softirq time during the traffic (every CPU; meaningful
	// when one lab runs at a time). Single: one director, the reference.
	Rate          int         `json:"rate,omitempty"`
	Single        bool        `json:"single_director,omitempty"`
	Latency       Percentiles `json:"latency"`
	FramesPerConn float64     `json:"director_frames_per_conn"`
	SoftirqMs     uint64      `json:"softirq_ms"`
	// Runs counts the verdicts of a cell run several times (Tally).
	Runs map[Verdict]int `json:"runs,omitempty"`
	// Logs are the directors' logs, by node, and for a failed scenario
	// each director's IPVS, mangle and nat tables at the end.
	Logs map[string]string `json:"logs,omitempty"`
}

// Outage is a time a box's servers were down.
type Outage struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// during says whether connection c overlapped one of outages.
func during(outages []Outage, c Conn) bool {
	return slices.ContainsFunc(outages, func(o Outage) bool {
		return c.Start.Before(o.To) && c.Start.Add(c.Latency).After(o.From)
	})
}

// Sample is the frames bridge ports carried in one interval: on the
// client's port, and on the directors' ports. With the loop, director
// frames far outnumber client frames.
type Sample struct {
	At        time.Duration `json:"at_ns"`
	Client    uint64        `json:"client"`
	Directors uint64        `json:"directors"`
}

// SampleInterval is the Timeline's resolution.
const SampleInterval = 100 * time.Millisecond

// sampleFrames reads the bridge's port counters every SampleInterval
// until stop is closed, and returns the per-interval frame counts.
func sampleFrames(bridge *lab.Box, c Cluster, client string, t0 time.Time, stop <-chan struct{}) []Sample {
	sum := func() (cl, dir uint64) { return bridgeFrames(bridge, c, client) }
	var out []Sample
	lastC, lastD := sum()
	tick := time.NewTicker(SampleInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return out
		case <-tick.C:
			cl, dir := sum()
			out = append(out, Sample{At: time.Since(t0), Client: cl - lastC, Directors: dir - lastD})
			lastC, lastD = cl, dir
		}
	}
}

// Run builds a lab from topo, starts impl with fix on its two directors,
// applies the event to the MASTER, sends the workload (MySQL, or
// opts.Service's) to the VIP from the client, and judges. The lab is torn
// down before it returns.
func Run(ctx context.Context, topo *lab.Topology, impl Implementation, fix Fix, ev Event, opts Options) (_ *Result, err error) {
	opts.defaults()
	r := &Result{Service: opts.Service.Name, Single: opts.SingleDirector, Scenario: ev, Implementation: impl.Name(), Fix: fix, Expected: cmp.Or(opts.Expected, Expected(fix, ev))}
	c, err := NewCluster(topo)
	if err != nil {
		return nil, err
	}
	if opts.Service.Port != 0 {
		c.Port = opts.Service.Port
	}
	if opts.Service.VIP.IsValid() {
		c.VIP = opts.Service.VIP
	}
	c.Single = opts.SingleDirector
	t0 := time.Now()
	step := func(what string) {
		fmt.Fprintf(opts.Progress, "lvslab: %s, %s, fix %s: %s at %.1fs\n", ev, impl.Name(), fix, what, time.Since(t0).Seconds())
	}
	l, err := lab.Build(ctx, topo, lab.Options{RunDir: opts.RunDir, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	r.Admission = l.AdmissionWait()
	step(fmt.Sprintf("lab up (%.1fs of it waiting for admission)", r.Admission.Seconds()))
	if opts.Bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Bound)
		defer cancel()
	}
	backends := map[backendKey]*backend{}
	defer func() {
		for _, b := range backends {
			b.stop()
		}
		r.Logs = impl.Logs()
		if err != nil || !r.Pass {
			// Six execs, a second or more under TCG: only when it helps.
			for _, d := range c.Directors {
				r.Logs[d.Node+" at the end"] = kernelState(l.Box(d.Node))
			}
		}
		if cerr := l.Close(); err == nil && cerr != nil {
			err = cerr
		}
		step("lab down")
	}()
	// One built-in backend a port: it listens on every address.
	for _, s := range append([]Service{{Port: c.Port, Backend: opts.Service.Backend}}, opts.Backends...) {
		if s.Backend == BackendMySQL || backends[backendKey{c.Directors[0].Node, s.Port}] != nil {
			continue
		}
		for _, node := range c.servers() {
			if backends[backendKey{node, s.Port}], err = startBackend(l.Box(node), s.Backend, s.Port, l.ServerID(node)); err != nil {
				return nil, err
			}
		}
	}
	startFix := fix
	if ev == Reconfigure {
		startFix = FixNone
	}
	if err := StartBoth(ctx, impl, l, c, startFix); err != nil {
		return nil, err
	}
	step("directors started")
	if err := WaitReady(ctx, l, c, readyBound); err != nil {
		// Evidence of a hang: where each director box's processes wait.
		return nil, fmt.Errorf("%w (%s; d1: %s; d2: %s)", err, logTails(impl),
			l.Box(c.Directors[0].Node).Stacks(), l.Box(c.Directors[1].Node).Stacks())
	}
	step("MASTER alone holds the VIP, both tables full")
	if fix == FixBackupOnly {
		if err := waitBackupDaemon(ctx, l, c); err != nil {
			return nil, fmt.Errorf("%w (%s)", err, logTails(impl))
		}
	}
	if fix == FixRedirect {
		// Settled: keepalived runs its notify scripts asynchronously, after
		// the state changes. Until notify_master has run, the MASTER
		// redirects all VIP traffic to itself; until notify_backup has,
		// the BACKUP does not, and re-balances.
		err := WaitFor(ctx, 15*time.Second, func() string {
			if on, err := redirecting(l.Box(c.Directors[0].Node), c); err != nil || on {
				return fmt.Sprintf("the MASTER still redirects VIP traffic (%v)", err)
			}
			if on, err := redirecting(l.Box(c.Directors[1].Node), c); err != nil || !on {
				return fmt.Sprintf("the BACKUP does not redirect VIP traffic yet (%v)", err)
			}
			return ""
		})
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, logTails(impl))
		}
	}
	r.Setup = time.Since(t0)
	client, vip := clientNode(topo), net.JoinHostPort(c.VIP.String(), fmt.Sprint(c.Port))
	passive, err := r.apply(ctx, l, c, impl, fix, ev, opts, client, vip, backends)
	if err != nil {
		return nil, err
	}
	if ev != Steady && ev != MySQLFlap {
		step(string(ev) + " done")
	}
	wantServers := len(c.servers())
	if ev == MySQLDown {
		wantServers--
	}
	// The capture starts an IPVS estimator tick before the first reading
	// of the counters, which move at its ticks only: whatever they count
	// between the readings crossed the bridge while the capture ran. (It
	// started after the reading once, and a passive box counted one
	// packet more than the capture saw clients send it, most likely a
	// late segment of the writes between the tick and the capture.)
	capture, err := StartCapture(l.Box(topo.Bridges[0].Name))
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", topo.Bridges[0].Name, err)
	}
	time.Sleep(ipvsStatsDelay)
	before, err := observe(l, c)
	if err != nil {
		capture.Stop()
		return nil, err
	}
	stop, sampled := make(chan struct{}), make(chan []Sample)
	r.TimelineStart = time.Now()
	go func() { sampled <- sampleFrames(l.Box(topo.Bridges[0].Name), c, client, r.TimelineStart, stop) }()
	t1 := time.Now()
	var every time.Duration
	if opts.Rate > 0 {
		every = time.Second / time.Duration(opts.Rate)
	}
	soft0, err := softirq()
	if err != nil {
		capture.Stop()
		return nil, err
	}
	var cycled <-chan struct{}
	var flapped func() error
	if ev == MySQLFlap {
		every = flapEvery
		cycled, flapped = r.flapping(ctx, l, c, opts, client, vip, passive, backends)
	}
	r.Conns = Reads(ctx, l.Box(client), clientAddrs(topo, client), opts.Service.Backend, vip, opts.Connections, opts.Parallel, every, opts.DialTimeout, opts.Timeout, cycled)
	r.Traffic = time.Since(t1)
	step("traffic done")
	soft1, err := softirq()
	if flapped != nil {
		if ferr := flapped(); ferr != nil {
			capture.Stop()
			return nil, fmt.Errorf("%s: %w", ev, ferr)
		}
		step(fmt.Sprintf("%s done: %d outages, the servers up again", ev, len(r.Outages)))
	}
	if err != nil {
		capture.Stop()
		return nil, err
	}
	r.Rate, r.SoftirqMs = opts.Rate, soft1-soft0
	time.Sleep(SampleInterval) // the last interval
	close(stop)
	r.Timeline = <-sampled
	if fix == FixBackupOnly {
		if r.SyncDaemons, err = syncDaemons(l, c); err != nil {
			capture.Stop()
			return nil, err
		}
	}
	// IPVS publishes its per-service counters from the rate estimator's
	// timer, every 2 s (ip_vs_est.c): wait for one tick before reading.
	// The capture runs on until then, so it holds every packet the
	// counters do (the connections' last segments among them).
	time.Sleep(ipvsStatsDelay)
	after, err := observe(l, c)
	frames, stats := capture.Stop()
	if err != nil {
		return nil, err
	}
	dirs := []net.HardwareAddr{c.Directors[0].MAC, c.Directors[1].MAC}
	r.Bounces = new(CountBounces(frames, dirs, c.VIP, uint16(c.Port)))
	r.PassiveFromClients = new(FromClients(frames, passive.MAC, dirs, c.VIP, uint16(c.Port)))
	r.Capture = &stats
	if opts.CaptureDir != "" {
		if r.Pcap, err = savePcap(opts.CaptureDir, r, frames, capture.ports); err != nil {
			return nil, err
		}
	}
	r.judge(c, passive.Node, wantServers, before, after)
	step("judged " + string(r.Verdict))
	return r, nil
}

// apply makes event ev happen to the running cluster and returns the
// passive director after it: the one not holding the VIP (the BACKUP, or
// after a failover the old MASTER). It records how long the event took to
// take effect and, across failovers, the write workload.
func (r *Result) apply(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, fix Fix, ev Event, opts Options, client, vip string, backends map[backendKey]*backend) (Director, error) {
	passive := c.Directors[1]
	switch ev {
	case MySQLDown:
		t1 := time.Now()
		if _, err := stopServers(l, passive.Node, backends); err != nil {
			return Director{}, err
		}
		err := WaitFor(ctx, 30*time.Second, func() string {
			for _, d := range c.Directors {
				if to, err := sendsTo(l.Box(d.Node), passive.Addr); err != nil {
					return err.Error()
				} else if to {
					return fmt.Sprintf("%s still sends to %s", d.Node, passive.Addr)
				}
			}
			return ""
		})
		if err != nil {
			return Director{}, fmt.Errorf("health check: %w", err)
		}
		r.Failover = time.Since(t1)
	case FailoverStop, FailoverKill, FailoverDelayed:
		err := r.acrossWrites(ctx, l, c, opts, client, vip, func() (err error) {
			if ev == FailoverDelayed {
				d1, d2 := c.Directors[0], c.Directors[1]
				heal, err := impair(l, lab.Netem{Delay: "100ms", Jitter: "50ms"},
					impairment{d1.Node, d1.Iface, true, lab.Match{SrcMAC: d2.MAC}}, impairment{d2.Node, d2.Iface, true, lab.Match{SrcMAC: d1.MAC}})
				if err != nil {
					return err
				}
				defer heal()
			}
			r.Failover, err = TimeVIPTakeover(ctx, l.Box(passive.Node), c, func() error { return impl.Stop(0, ev == FailoverStop) })
			return err
		})
		if err != nil {
			return Director{}, fmt.Errorf("failover: %w", err)
		}
		passive = c.Directors[0]
	case SplitBrain, AdvertLoss10, AdvertLoss30, AdvertLoss50, Frozen, Isolated, ClientCut:
		w, err := WatchVIP(l.Box(passive.Node), c)
		if err != nil {
			return Director{}, err
		}
		defer w.Close()
		err = r.acrossWrites(ctx, l, c, opts, client, vip, func() error { return r.adversity(ctx, l, c, impl, fix, ev) })
		if err != nil {
			return Director{}, fmt.Errorf("%s: %w", ev, err)
		}
		r.Takeovers = new(w.Takes())
	case Switchover:
		t1 := time.Now()
		c.Directors[1].Priority = 200
		err := impl.Stop(1, true)
		if err == nil {
			err = impl.Start(ctx, l, c, 1, fix)
		}
		if err == nil {
			err = WaitFor(ctx, 15*time.Second, func() string { return onlyVIP(l, c, 1) })
		}
		if err != nil {
			return Director{}, fmt.Errorf("switchover: %w", err)
		}
		r.Failover = time.Since(t1)
		passive = c.Directors[0]
	case Reconfigure:
		settler, ok := impl.(interface {
			Settle(context.Context, *lab.Lab, Cluster) error
		})
		if !ok {
			return Director{}, fmt.Errorf("%s cannot say when its restarted directors have settled: no reconfigure event", impl.Name())
		}
		t1 := time.Now()
		for _, i := range []int{1, 0} {
			if err := impl.Stop(i, false); err != nil {
				return Director{}, err
			}
			if err := impl.Start(ctx, l, c, i, fix); err != nil {
				return Director{}, err
			}
		}
		if err := settler.Settle(ctx, l, c); err != nil {
			return Director{}, fmt.Errorf("after the restarts: %w", err)
		}
		if err := WaitReady(ctx, l, c, 30*time.Second); err != nil {
			return Director{}, fmt.Errorf("after the restarts: %w", err)
		}
		r.Failover = time.Since(t1)
	case Failback:
		if err := impl.Stop(0, false); err != nil {
			return Director{}, err
		}
		if err := WaitFor(ctx, 15*time.Second, func() string { return HoldsVIP(l.Box(passive.Node), c) }); err != nil {
			return Director{}, fmt.Errorf("failover before the failback: %w", err)
		}
		t1 := time.Now()
		if err := impl.Start(ctx, l, c, 0, fix); err != nil {
			return Director{}, err
		}
		if err := WaitFor(ctx, 15*time.Second, func() string { return onlyVIP(l, c, 0) }); err != nil {
			return Director{}, fmt.Errorf("failback: %w", err)
		}
		r.Failover = time.Since(t1)
	}
	return passive, nil
}

// acrossWrites makes event happen while the write workload runs (see
// startWrites).
func (r *Result) acrossWrites(ctx context.Context, l *lab.Lab, c Cluster, opts Options, client, vip string, event func() error) error {
	writes := r.startWrites(ctx, l, c, opts, client, vip)
	time.Sleep(5 * writeInterval)
	err := event()
	time.Sleep(5 * writeInterval)
	if werr := writes(); err == nil {
		err = werr
	}
	return err
}

// startWrites starts the write workload (MySQL inserts, on a MySQL
// service); the returned func stops it and checks that every
// acknowledged write survived.
func (r *Result) startWrites(ctx context.Context, l *lab.Lab, c Cluster, opts Options, client, vip string) func() error {
	mysql := opts.Service.Backend == BackendMySQL
	wstop, wdone := make(chan struct{}), make(chan []Write)
	go func() {
		if !mysql {
			<-wstop
			wdone <- nil
			return
		}
		wdone <- Writes(ctx, l.Box(client), vip, time.Now().UnixNano(), writeInterval, opts.Timeout, wstop)
	}()
	return func() error {
		close(wstop)
		writes := <-wdone
		if !mysql {
			return nil
		}
		var dbs []string
		for _, a := range c.Realservers() {
			dbs = append(dbs, net.JoinHostPort(a.String(), fmt.Sprint(c.Port)))
		}
		ws, err := CheckWrites(ctx, l.Box(client), dbs, writes, opts.Timeout)
		if err != nil {
			return err
		}
		r.Writes = &ws
		return nil
	}
}

// waitBackupDaemon waits until the BACKUP runs its backup sync daemon:
// backup_only guards a box only then, and its director starts it after
// the state change.
func waitBackupDaemon(ctx context.Context, l *lab.Lab, c Cluster) error {
	return WaitFor(ctx, readyBound, func() string {
		ds, err := syncDaemons(l, c)
		if err != nil {
			return err.Error()
		}
		if !slices.ContainsFunc(ds[c.Directors[1].Node], func(d director.SyncDaemon) bool { return d.State == director.SyncBackup }) {
			return c.Directors[1].Node + " runs no backup sync daemon yet"
		}
		return ""
	})
}

// adversity makes a split brain, an advert loss, a frozen or isolated
// MASTER or a cut client happen and waits until the pair has converged
// back: the MASTER alone holding the VIP, both tables full and, under
// backup_only, the BACKUP's backup sync daemon running again. It times
// that from the heal or the thaw.
func (r *Result) adversity(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, fix Fix, ev Event) error {
	d1, d2 := c.Directors[0], c.Directors[1]
	master, backup := l.Box(d1.Node), l.Box(d2.Node)
	var heal func() error
	var err error
	switch ev {
	case SplitBrain, Isolated:
		cut := []impairment{{d1.Node, d1.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d2.MAC}},
			{d2.Node, d2.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d1.MAC}}}
		if ev == Isolated {
			cut = []impairment{{d1.Node, d1.Iface, true, lab.Match{}}, {d1.Node, d1.Iface, false, lab.Match{}}}
		}
		if heal, err = impair(l, lab.Netem{Loss: 100}, cut...); err != nil {
			return err
		}
		if err := WaitFor(ctx, 15*time.Second, func() string { return HoldsVIP(backup, c) }); err != nil {
			heal()
			return fmt.Errorf("cut off, the BACKUP did not take the VIP: %w", err)
		}
		if why := HoldsVIP(master, c); why != "" {
			heal()
			return fmt.Errorf("cut off, the MASTER let go of the VIP: %s", why)
		}
		if ev == SplitBrain {
			time.Sleep(splitBrainFor)
		} else {
			time.Sleep(isolatedFor)
		}
		// Heal just after the BACKUP's own advert: the MASTER's next one
		// then reaches it first and it yields unheard, so the MASTER
		// sends no gratuitous ARP (see Findings). Either order is a
		// real heal; this one the same for every implementation.
		if err := nextAdvert(l.Box(l.Topo.Bridges[0].Name), d2.MAC, 5*time.Second); err != nil {
			heal()
			return err
		}
	case ClientCut:
		cl := l.Topo.Node(clientNode(l.Topo)).Interfaces[0]
		heal, err = impair(l, lab.Netem{Loss: 100}, impairment{d1.Node, d1.Iface, true, lab.Match{SrcMAC: cl.HardwareAddr()}},
			impairment{clientNode(l.Topo), cl.Name, true, lab.Match{SrcMAC: d1.MAC}})
		if err != nil {
			return err
		}
		time.Sleep(clientCutFor)
	case Frozen:
		if err := impl.Signal(0, syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(frozenFor)
		heal = func() error { return impl.Signal(0, syscall.SIGCONT) }
	default: // advert loss
		heal, err = impair(l, lab.Netem{Loss: advertLoss(ev)}, impairment{d2.Node, d2.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d1.MAC}})
		if err != nil {
			return err
		}
		time.Sleep(advertLossFor)
	}
	if err := heal(); err != nil {
		return err
	}
	// Converged: the MASTER alone holds the VIP and both tables are full
	// again (a box cut off marked the other's realserver down).
	t0 := time.Now()
	// readyBound: after a brief takeover the keepalived BACKUP under
	// backup_only can hang as it does at start (see readyBound and
	// Findings), both boxes holding the VIP for over 90 s.
	if err := WaitReady(ctx, l, c, readyBound); err != nil {
		return fmt.Errorf("after the heal: %w (%s; d1: %s; d2: %s)", err, logTails(impl), master.Stacks(), backup.Stacks())
	}
	if fix == FixBackupOnly {
		if err := waitBackupDaemon(ctx, l, c); err != nil {
			return fmt.Errorf("after the heal: %w (%s)", err, logTails(impl))
		}
	}
	r.Failover = time.Since(t0)
	return nil
}

// nextAdvert returns once the bridge box has seen a VRRP advert from the
// MAC src arrive, at most limit from now.
func nextAdvert(bridge *lab.Box, src net.HardwareAddr, limit time.Duration) error {
	var c *afpacket.Conn
	err := bridge.Do(func() (err error) {
		c, err = afpacket.Listen(unix.SOCK_DGRAM, unix.ETH_P_IP, "advert watch")
		return err
	})
	if err != nil {
		return err
	}
	timer := time.AfterFunc(limit, func() { c.Close() })
	defer timer.Stop()
	defer c.Close()
	buf := make([]byte, 64)
	for {
		n, from, err := c.Recv(buf)
		if err != nil {
			return fmt.Errorf("no advert from %s on %s within %s: %w", src, bridge.Name, limit, err)
		}
		if n > 9 && buf[9] == vrrpProtocol && bytes.Equal(from.Addr[:6], src) {
			return nil
		}
	}
}

// impairment is one direction of a link that lab.Impair impairs: toward
// node on its bridge port, or from it; only the frames match picks.
type impairment struct {
	node, iface string
	toNode      bool
	match       lab.Match
}

// impair applies n to each of is and returns the heal of them all.
func impair(l *lab.Lab, n lab.Netem, is ...impairment) (func() error, error) {
	var undos []func() error
	heal := func() error {
		var errs []error
		for _, u := range undos {
			errs = append(errs, u())
		}
		return errors.Join(errs...)
	}
	for _, i := range is {
		u, err := l.Impair(i.node, i.iface, i.toNode, i.match, n)
		if err != nil {
			heal()
			return nil, err
		}
		undos = append(undos, u)
	}
	return heal, nil
}

// readyBound is how long two freshly started directors may take to settle
// on one MASTER: 5 to 8 s in the timelines of parallel runs. In 2 of 9
// full parallel runs (the bound was 30 s then), a keepalived under
// backup_only that had to leave MASTER at start (both time out as BACKUP
// together) logged the higher-priority advert and then nothing for over
// 30 s, its VIP up beside the MASTER's. It switches its sync daemons
// before it drops the VIP, and the kernel's start_sync_thread takes the
// RTNL lock, which other labs' namespace teardown holds: the likely cause,
// not yet confirmed (a readiness failure now reports the boxes' stacks).
// Readiness is not a verdict; this only bounds the wait.
const readyBound = 90 * time.Second

// logTails is the end of each director's log, for an error that happened
// before there was a verdict to carry the logs.
func logTails(impl Implementation) string {
	var out []string
	for node, log := range impl.Logs() {
		out = append(out, node+"'s log: "+lab.Tail(log, 6))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// kernelState is what a director box holds at the end of a scenario, as
// an operator would look: IPVS, and the mangle and nat tables.
func kernelState(box *lab.Box) string {
	var out strings.Builder
	for _, argv := range [][]string{{"ipvsadm", "-Ln"}, {"iptables-save", "-t", "mangle"}, {"iptables-save", "-t", "nat"}} {
		fmt.Fprintf(&out, "$ %s\n", strings.Join(argv, " "))
		if _, err := box.Run(context.Background(), argv, &out, &out); err != nil {
			fmt.Fprintf(&out, "%v\n", err)
		}
	}
	return out.String()
}

// savePcap writes the capture as dir/<scenario>-<implementation>-<fix>
// [-<service>][-one-director][-<rate>ps].pcapng.
func savePcap(dir string, r *Result, frames []Frame, ports map[int]string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%s-%s", r.Scenario, r.Implementation, r.Fix)
	if r.Service != "" {
		name += "-" + strings.NewReplacer(" ", "-", ":", "-").Replace(r.Service)
	}
	if r.Single {
		name += "-one-director"
	}
	if r.Rate > 0 {
		name += fmt.Sprintf("-%dps", r.Rate)
	}
	path := filepath.Join(dir, name+".pcapng")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	err = WritePcapng(f, frames, ports)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return path, err
}

// writeInterval paces the write workload across a failover.
const writeInterval = 50 * time.Millisecond

// ipvsStatsDelay is one tick of the IPVS estimator, plus a margin.
const ipvsStatsDelay = 2200 * time.Millisecond

// snapshot is every observer's reading at one moment.
type snapshot struct {
	ipvs   map[string]IPVSCounters
	te     map[string]uint64
	frames map[string]PortFrames
}

func observe(l *lab.Lab, c Cluster) (snapshot, error) {
	s := snapshot{ipvs: map[string]IPVSCounters{}, te: map[string]uint64{}, frames: map[string]PortFrames{}}
	for _, d := range c.Directors {
		var err error
		if s.ipvs[d.Node], err = ReadIPVS(l.Box(d.Node)); err != nil {
			return s, err
		}
		if s.te[d.Node], err = TimeExceeded(l.Box(d.Node)); err != nil {
			return s, err
		}
	}
	for _, b := range l.Topo.Bridges {
		ports, err := ReadPorts(l.Box(b.Name))
		if err != nil {
			return s, err
		}
		for k, v := range ports {
			s.frames[k] = v
		}
	}
	return s, nil
}

// syncDaemons lists the IPVS sync daemons running on each director.
func syncDaemons(l *lab.Lab, c Cluster) (map[string][]director.SyncDaemon, error) {
	out := map[string][]director.SyncDaemon{}
	for _, d := range c.Directors {
		err := l.Box(d.Node).Do(func() (err error) {
			out[d.Node], err = director.SyncDaemons()
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("sync daemons in %s: %w", d.Node, err)
		}
	}
	return out, nil
}

func clientNode(t *lab.Topology) string {
	for _, n := range t.Nodes {
		if n.HasRole(lab.RoleClient) {
			return n.Name
		}
	}
	return ""
}

// clientAddrs are the addresses of the client node's interfaces: the
// clients the workload stands for.
func clientAddrs(t *lab.Topology, client string) []netip.Addr {
	var out []netip.Addr
	for _, ifc := range t.Node(client).Interfaces {
		for _, p := range ifc.Prefixes() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// WaitReady waits until the MASTER alone holds the VIP on its interface and
// both directors have a virtual service with both realservers.
func WaitReady(ctx context.Context, l *lab.Lab, c Cluster, limit time.Duration) error {
	return WaitFor(ctx, limit, func() string {
		// Started at once, both boxes may time out as BACKUP and take the
		// VIP until the MASTER's adverts reach the other: ready is after.
		if why := onlyVIP(l, c, 0); why != "" {
			return why
		}
		for i, d := range c.Directors {
			if why := hasService(l.Box(d.Node), len(c.servers())); why != "" && (i == 0 || !c.Single) {
				return why
			}
		}
		return ""
	})
}

// WaitFor polls check until it returns "" (ready) or limit passes; the
// error carries check's last answer.
func WaitFor(ctx context.Context, limit time.Duration, check func() string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		last := check()
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %s", limit, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TimeVIPTakeover runs action and times it until box holds the VIP, from
// the kernel's address event.
func TimeVIPTakeover(ctx context.Context, box *lab.Box, c Cluster, action func() error) (time.Duration, error) {
	w, err := WatchVIP(box, c)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	if HoldsVIP(box, c) == "" {
		return 0, fmt.Errorf("%s held the VIP before the event", box.Name)
	}
	t0 := time.Now()
	if err := action(); err != nil {
		return 0, err
	}
	at, err := w.Wait(ctx, 15*time.Second)
	return at.Sub(t0), err
}

// onlyVIP says why director i is not the only one holding the VIP, or "".
func onlyVIP(l *lab.Lab, c Cluster, i int) string {
	if why := HoldsVIP(l.Box(c.Directors[i].Node), c); why != "" {
		return why
	}
	if HoldsVIP(l.Box(c.Peer(i).Node), c) == "" {
		return c.Peer(i).Node + " holds the VIP too"
	}
	return ""
}

// HoldsVIP says why box does not hold the VIP on its interface, or "".
func HoldsVIP(box *lab.Box, c Cluster) string {
	addrs, err := box.Netlink().AddrList(nil, 0)
	if err != nil {
		return err.Error()
	}
	// The VIP is on lo (ifindex 1) of every realserver; only the MASTER
	// has it on its interface as well.
	onIface := func(a netlink.Addr) bool { return a.LinkIndex != 1 && a.IP.Equal(c.VIP.AsSlice()) }
	if !slices.ContainsFunc(addrs, onIface) {
		return fmt.Sprintf("%s does not hold the VIP %s", box.Name, c.VIP)
	}
	return ""
}

// sendsTo says whether one of box's virtual services sends to realserver
// rs (with a weight).
func sendsTo(box *lab.Box, rs netip.Addr) (bool, error) {
	h, err := ipvs.New(box.Path())
	if err != nil {
		return false, err
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		return false, err
	}
	for _, s := range svcs {
		dsts, err := h.GetDestinations(s)
		if err != nil {
			return false, err
		}
		if slices.ContainsFunc(dsts, func(d *ipvs.Destination) bool { return d.Address.Equal(rs.AsSlice()) && d.Weight > 0 }) {
			return true, nil
		}
	}
	return false, nil
}

// hasService says why box has no virtual service, or one without its n
// realservers, or "".
func hasService(box *lab.Box, n int) string {
	h, err := ipvs.New(box.Path())
	if err != nil {
		return err.Error()
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err == nil && len(svcs) == 0 {
		return box.Name + " has no virtual service yet"
	}
	for _, s := range svcs {
		dsts, err := h.GetDestinations(s)
		if err != nil || len(dsts) != n {
			return fmt.Sprintf("%s's virtual service %s:%d (fwmark %d) has %d realservers, not %d, yet (%v)", box.Name, s.Address, s.Port, s.FWMark, len(dsts), n, err)
		}
	}
	if err != nil {
		return err.Error()
	}
	return ""
}
