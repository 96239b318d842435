package scenarios

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Evidence is what a run observed over its traffic, and what its cell
// expects: all the judge reads.
type Evidence struct {
	Scenario Event
	Fix      Fix
	Expected Verdict
	// UnservedBy is why the configs serve nothing, where the plan knew
	// (Options.Unserved).
	UnservedBy string
	// Passive is the director not holding the VIP, and PassivePkts what
	// its IPVS service counted. Others are what the services of the
	// directors beyond the pair counted (a third or fourth box, BACKUP
	// throughout), by node.
	Passive     string
	PassivePkts uint32
	Others      map[string]uint32
	// WantServers is how many realservers should have served.
	WantServers int
	// TimeExceeded is the ICMP time exceeded the directors sent.
	TimeExceeded uint64
	// Bounces, Capture and PassiveFromClients are the bridge capture's
	// (nil: no capture).
	Bounces            *Bounces
	Capture            *CaptureStats
	PassiveFromClients *uint64
	Conns              []Conn
	Outages            []Outage
	Takeovers          *int
	Healed             time.Duration // from the heal to the MASTER alone holding the VIP
	Writes             *WriteStats
}

// Judgement is the judge's verdict, whether it is the one the cell
// expects, and the reasons: the loop evidence first, then what decided
// otherwise, then notes; and the connections by outcome it counted.
type Judgement struct {
	Verdict Verdict
	Pass    bool
	Reasons []Reason
	conns   connTally
}

// Judge decides from evidence alone. LOOP needs positive loop evidence: a
// segment that bounced between the directors, an ICMP time exceeded, or a
// passive box counting more than clients sent it (or anything, when the
// capture is incomplete and cannot clear it). Connections that failed
// without any of that are UNSERVED, named by cause: the harness's or the
// host's trouble (a lab starved of CPU times out handshakes), never a
// loop. Otherwise NO-BALANCE or CLEAN by how many boxes served.
func Judge(e Evidence) Judgement {
	t := e.tally()
	loop, notes := e.loopEvidence(t)
	failed := e.failures()
	j := Judgement{conns: t}
	switch {
	case len(loop) > 0:
		j.Verdict = Loop
		j.Reasons = append(loop, failed...)
	case len(failed) > 0:
		j.Verdict = Unserved
		failed[0].Unserved, failed[0].Why = true, e.UnservedBy
		j.Reasons = failed
	case len(t.share) != e.WantServers:
		j.Verdict = NoBalance
		j.Reasons = []Reason{{Kind: ReasonServed, N: uint64(t.served), Of: uint64(len(e.Conns)), Share: t.share, Want: e.WantServers}}
	default:
		j.Verdict = Clean
		j.Reasons = []Reason{{Kind: ReasonServed, N: uint64(t.served), Of: uint64(len(e.Conns)), Share: t.share}}
	}
	j.Pass = j.Verdict == e.Expected
	if !j.Pass && e.Expected == Expected(e.Fix, e.Scenario) && clientsMayStay(e.Fix, e.Scenario) {
		switch {
		case j.Verdict == Clean:
			j.Pass = true
			notes = append(notes, Reason{Kind: ReasonClientsBack})
		case j.Verdict == NoBalance && e.PassiveFromClients != nil && *e.PassiveFromClients > 0:
			j.Pass = true
			notes = append(notes, Reason{Kind: ReasonClientsStayed, Node: e.Passive, N: *e.PassiveFromClients, Fix: e.Fix})
		}
	}
	j.Reasons = append(j.Reasons, notes...)
	if w := e.Writes; w != nil {
		j.Reasons = append(j.Reasons, Reason{Kind: ReasonWritesKept, N: uint64(w.Acked), Of: uint64(w.Attempted), Lost: w.Lost})
		if w.Lost > 0 {
			j.Pass = false
		}
	}
	return j
}

// loopEvidence is the positive evidence of a loop, and notes on what was
// seen but is not evidence.
func (e Evidence) loopEvidence(t connTally) (loop, notes []Reason) {
	if b := e.Bounces; b != nil && b.Bounced > 0 {
		loop = append(loop, Reason{Kind: ReasonBounced, N: uint64(b.Bounced), Of: uint64(b.Forwarded), Hops: b.MaxDepth})
	}
	if p := e.PassivePkts; p > 0 {
		// The passive service's count is the evidence, unless a complete
		// capture shows it all came from clients: a SIGKILLed MASTER keeps
		// the VIP on its interface and still answers ARP. More than the
		// clients sent it means it re-balanced what the active box
		// forwarded, a loop whether or not it picked itself this time.
		r := Reason{Kind: ReasonPassiveCounted, Node: e.Passive, N: uint64(p)}
		b, fc := e.Bounces, e.PassiveFromClients
		switch {
		case b == nil || fc == nil || !e.Capture.Complete():
			loop = append(loop, r)
		case uint64(p) <= *fc && b.Bounced == 0:
			r.Kind, r.FromClients = ReasonPassiveFromClients, *fc
			notes = append(notes, r)
		case b.Bounced == 0:
			r.Kind, r.FromClients = ReasonPassiveRebalanced, *fc
			loop = append(loop, r)
		default:
			loop = append(loop, r)
		}
	}
	for _, node := range slices.Sorted(maps.Keys(e.Others)) {
		// A third or fourth box never holds the VIP here: clients send
		// it nothing, so whatever its service counted, it balanced from
		// what a director forwarded.
		if p := e.Others[node]; p > 0 {
			loop = append(loop, Reason{Kind: ReasonOtherCounted, Node: node, N: uint64(p)})
		}
	}
	if e.TimeExceeded > 0 {
		loop = append(loop, Reason{Kind: ReasonTimeExceeded, N: e.TimeExceeded})
	}
	for i := range loop {
		loop[i].Loop = true
	}
	return loop, append(notes, e.notes(t)...)
}

// notes are what the run saw that explains, but is no evidence; t is
// e's connections by outcome.
func (e Evidence) notes(t connTally) (notes []Reason) {
	if cs := e.Capture; !cs.Complete() {
		notes = append(notes, Reason{Kind: ReasonCaptureIncomplete, N: uint64(cs.Frames), Drops: uint64(cs.KernelDrops), Overflow: uint64(cs.Overflow)})
	}
	if e.Takeovers != nil {
		r := Reason{Kind: ReasonTakeovers, N: uint64(*e.Takeovers)}
		if e.Scenario != MySQLFlap { // nothing to heal
			r.Took = e.Healed
		}
		notes = append(notes, r)
	}
	if t.down > 0 {
		notes = append(notes, Reason{Kind: ReasonDownErrors, Node: e.Passive, N: uint64(t.down), Of: uint64(len(e.Conns)), First: firstError(e.Conns, e.flapped)})
	}
	if len(e.Outages) > 0 {
		notes = append(notes, Reason{Kind: ReasonOutages, Node: e.Passive, N: uint64(len(e.Outages)), Took: outageTime(e.Outages)})
	}
	if t.moved > 0 {
		notes = append(notes, Reason{Kind: ReasonMovedErrors, Node: e.Passive, N: uint64(t.moved), Of: uint64(len(e.Conns)), FromClients: *e.PassiveFromClients, First: firstError(e.Conns, e.moved)})
	}
	return notes
}

// connTally is the connections by outcome.
type connTally struct {
	served, hung, errors, down, moved int
	share                             map[int]int // by @@server_id
}

func (e Evidence) tally() connTally {
	t := connTally{share: map[int]int{}}
	for _, cn := range e.Conns {
		switch {
		case cn.ServedBy > 0:
			t.served++
			t.share[cn.ServedBy]++
		case cn.Hung:
			t.hung++
		default:
			t.errors++
			switch {
			case e.flapped(cn):
				t.down++
			case e.moved(cn):
				t.moved++
			}
		}
	}
	return t
}

// flapped: a connection refused or closed while its server was down is
// the flapping server's doing (MySQLFlap), not the pair's.
func (e Evidence) flapped(c Conn) bool { return c.refused() && during(e.Outages, c) }

// moved: a connection reset or closed while the VIP moved under it. The
// BACKUP took the VIP during the event and a complete capture saw clients
// still send to the passive box: a connection whose segments reach the
// box that has no entry for it is reset there (IPVS schedules SYNs only).
// The takeover's doing, on any VRRP pair; not a loop, not the harness's.
func (e Evidence) moved(c Conn) bool {
	return c.refused() && e.Takeovers != nil && *e.Takeovers > 0 &&
		e.PassiveFromClients != nil && *e.PassiveFromClients > 0 && e.Capture.Complete()
}

// failed: a connection neither served nor explained by a flap or a move.
func (e Evidence) failed(c Conn) bool { return c.ServedBy == 0 && !e.flapped(c) && !e.moved(c) }

// failures is the connections that got no answer, by cause, leaving
// out those a flap or a move explains: one reason, or none.
func (e Evidence) failures() []Reason {
	causes := map[string]int{}
	n := 0
	for _, c := range e.Conns {
		if e.failed(c) {
			n++
			causes[cmp.Or(c.Cause, "other error")]++
		}
	}
	if n == 0 {
		return nil
	}
	return []Reason{{Kind: ReasonFailed, N: uint64(n), Of: uint64(len(e.Conns)), Causes: causes, First: firstError(e.Conns, e.failed)}}
}

// firstError is the first error of a failed connection that
// which picks.
func firstError(conns []Conn, which func(Conn) bool) string {
	for _, c := range conns {
		if c.Error != "" && which(c) {
			return c.Error
		}
	}
	return ""
}

// reasonsText is the reasons as one line.
func reasonsText(rs []Reason) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return strings.Join(out, "; ")
}

func shareString(share map[int]int) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(share)) {
		parts = append(parts, fmt.Sprintf("%d:%d", id, share[id]))
	}
	return strings.Join(parts, " ")
}
