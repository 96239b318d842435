package scenarios

import (
	"cmp"
	"context"
	"time"
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
	// CrashReuse is FailoverKill where the clients reuse their ports:
	// before the kill each client port of the reads (holePortBase on)
	// connects through the MASTER and closes, the client first; once the
	// BACKUP holds the VIP and the client sends to it, the reads reuse
	// those ports at once (tcp_tw_reuse, as a busy client). The entries
	// the killed MASTER's table keeps (FIN_WAIT, two minutes) for the
	// ones it had sent to the BACKUP send them back: the crash hole,
	// which the mark alone leaves open (FixFwmarkOnly).
	CrashReuse Event = "crash-reuse"
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

// eventSpec is an event as values: how it is made to happen and healed,
// how long it lasts, what the run does around it, and what it comes down
// to for the expectation. The events table below is every event.
type eventSpec struct {
	name Event
	// inject makes the event happen to the running pair and returns its
	// heal (nil: nothing to heal), called once lasts has passed, or at
	// once when inject fails. A plain event times itself into
	// Result.Failover; nil: nothing happens before the traffic.
	inject func(ctx context.Context, r *Result, rn running) (heal func() error, err error)
	lasts  time.Duration
	// converges: after the heal, the pair must converge back (the MASTER
	// alone holding the VIP, both tables full, the fix in place), and
	// Result.Failover is that convergence; the BACKUP's takeovers during
	// the event are counted.
	converges bool
	// writes: the write workload runs across the event.
	writes bool
	// masterPassive: after the event the MASTER's box is the passive
	// one (a failover that stays).
	masterPassive bool
	// unfixedStart: the directors start without the fix, the event
	// brings it.
	unfixedStart bool
	// serverOut: the passive box's servers are out of both tables at
	// the reads.
	serverOut bool
	// duringReads runs beside the read workload, which goes on, one
	// connection every readsEvery, until it has cycled; end waits for
	// it and returns its error.
	duringReads func(ctx context.Context, r *Result, rn running, passive Director) (cycled <-chan struct{}, end func() error)
	readsEvery  time.Duration
	// adversity: the network or the host misbehaves (Adversity).
	adversity bool
	// endsAs is the plain event the pair comes down to, whose
	// expectation the event shares (itself when empty).
	endsAs Event
	// reusesPorts: the reads reuse the client ports the event used
	// before a crash (Workload.PortBase): the crash hole.
	reusesPorts bool
	// clients: after the event, clients whose ARP entry names the box
	// that yielded may still send to it (see clientsMayStay), or do.
	clients clientsAfter
}

// clientsAfter is where the clients send after an event in which the
// BACKUP took the VIP and yielded it again.
type clientsAfter int

const (
	clientsBack  clientsAfter = iota // to the MASTER, as before
	clientsMaybe                     // to either, by their neighbour timers
	clientsStay                      // to the box that yielded: the MASTER sent no gratuitous ARP (Findings)
)

// events is every event, in the order reports list them.
var events = []eventSpec{
	{name: Steady},
	{name: FailoverStop, inject: failover(true, false), writes: true, masterPassive: true},
	{name: FailoverKill, inject: failover(false, false), writes: true, masterPassive: true},
	{name: MySQLDown, inject: serverDown, serverOut: true},
	{name: Switchover, inject: switchover, masterPassive: true},
	{name: Failback, inject: failback},
	{name: Reconfigure, inject: reconfigure, unfixedStart: true},
	{name: CrashReuse, inject: crashReuse, masterPassive: true, reusesPorts: true, endsAs: FailoverKill},
	{name: SplitBrain, inject: cutVRRP(false), lasts: splitBrainFor, converges: true, writes: true, adversity: true, endsAs: Steady, clients: clientsStay},
	{name: AdvertLoss10, inject: loseAdverts(10), lasts: advertLossFor, converges: true, writes: true, adversity: true, endsAs: Steady, clients: clientsMaybe},
	{name: AdvertLoss30, inject: loseAdverts(30), lasts: advertLossFor, converges: true, writes: true, adversity: true, endsAs: Steady, clients: clientsMaybe},
	{name: AdvertLoss50, inject: loseAdverts(50), lasts: advertLossFor, converges: true, writes: true, adversity: true, endsAs: Steady, clients: clientsMaybe},
	{name: Frozen, inject: freeze, lasts: frozenFor, converges: true, writes: true, adversity: true, endsAs: Failback},
	{name: Isolated, inject: cutVRRP(true), lasts: isolatedFor, converges: true, writes: true, adversity: true, endsAs: Steady, clients: clientsStay},
	{name: ClientCut, inject: cutClient, lasts: clientCutFor, converges: true, writes: true, adversity: true, endsAs: Steady},
	{name: FailoverDelayed, inject: failover(false, true), writes: true, masterPassive: true, adversity: true, endsAs: FailoverKill},
	{name: MySQLFlap, duringReads: flap, readsEvery: flapEvery, adversity: true, endsAs: Steady},
}

// spec is event ev's row of the table (the zero row, Steady's, for an
// event not in it).
func spec(ev Event) eventSpec {
	for _, e := range events {
		if e.name == ev {
			return e
		}
	}
	return eventSpec{name: ev}
}

// Events lists every event.
var Events = eventNames(func(eventSpec) bool { return true })

// Adversity are the events where the network or the host misbehaves.
var Adversity = eventNames(func(e eventSpec) bool { return e.adversity })

func eventNames(which func(eventSpec) bool) []Event {
	var names []Event
	for _, e := range events {
		if which(e) {
			names = append(names, e.name)
		}
	}
	return names
}

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

// Expected is the one table of expected outcomes. Without a guard, the
// passive director re-balances what the active one forwards (LOOP), unless
// a graceful stop left it no rules; the fwmark guard is CLEAN throughout;
// backup_only and REDIRECT do not guard a box whose director was SIGKILLed
// as MASTER. The same for every implementation. Findings explains each
// outcome that contradicted a first expectation; the REDIRECT fix through a
// switchover is not in the suite (see there).
func Expected(fix Fix, ev Event) Verdict {
	e := spec(ev)
	servesItself := fix == FixBackupOnly || fix == FixRedirect
	if e.clients == clientsStay && servesItself {
		// The clients stay with the box that yielded, which under these
		// fixes serves them itself rather than balance.
		return NoBalance
	}
	// An adversity event ends as the plain event it comes down to: the
	// pair converged back to its MASTER (a frozen one returns like a
	// failback), or a failover by SIGKILL.
	switch end := cmp.Or(e.endsAs, ev); {
	case end == MySQLDown:
		return Clean // nothing is forwarded to the other box any more
	case fix == FixNone && end != FailoverStop:
		return Loop // steady state, and whenever the passive box keeps its rules
	case servesItself && end == FailoverKill:
		return Loop
	case fix == FixFwmarkOnly && e.reusesPorts:
		return Loop // the crash hole
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
	return (fix == FixBackupOnly || fix == FixRedirect) && spec(ev).clients != clientsBack
}
