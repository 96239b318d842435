package scenarios

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// judge decides from evidence alone. LOOP needs positive loop evidence: a
// segment that bounced between the directors, an ICMP time exceeded, or a
// passive box counting more than clients sent it (or anything, when the
// capture is incomplete and cannot clear it). Connections that failed
// without any of that are UNSERVED, named by cause: the harness's or the
// host's trouble (a lab starved of CPU times out handshakes), never a
// loop. Otherwise NO-BALANCE or CLEAN by how many boxes served.
func (r *Result) judge(c Cluster, passive string, wantServers int, before, after snapshot) {
	r.count(c, before, after)
	loop, notes := r.loopEvidence(passive)
	for _, d := range c.Directors[min(2, len(c.Directors)):] {
		// A third or fourth box never holds the VIP here: clients send
		// it nothing, so whatever its service counted, it balanced from
		// what a director forwarded.
		if p := r.IPVS[d.Node].InPkts; p > 0 {
			loop = append(loop, fmt.Sprintf("%s, BACKUP throughout, counted %d packets in its service: it balanced what the MASTER forwarded", d.Node, p))
		}
	}
	failed := r.failures()
	why := loop
	switch {
	case len(loop) > 0:
		r.Verdict = Loop
		if failed != "" {
			why = append(why, failed)
		}
	case failed != "" && r.unservedBy != "":
		r.Verdict = Unserved
		why = append(why, failed+", without loop evidence, as the plan said: "+r.unservedBy)
	case failed != "":
		r.Verdict = Unserved
		why = append(why, failed+", without loop evidence: not a verdict on the pair")
	case len(r.Share) != wantServers:
		r.Verdict = NoBalance
		why = append(why, fmt.Sprintf("%d of %d served, by server_id %v; want %d serving", r.Served, r.Connections, shareString(r.Share), wantServers))
	default:
		r.Verdict = Clean
		why = append(why, fmt.Sprintf("%d of %d served, by server_id %v", r.Served, r.Connections, shareString(r.Share)))
	}
	r.Pass = r.Verdict == r.Expected
	if !r.Pass && r.Expected == Expected(r.Fix, r.Scenario) && clientsMayStay(r.Fix, r.Scenario) {
		switch {
		case r.Verdict == Clean:
			r.Pass = true
			notes = append(notes, "the clients were back with the MASTER by the reads (their ARP entries, see Findings)")
		case r.Verdict == NoBalance && r.PassiveFromClients != nil && *r.PassiveFromClients > 0:
			r.Pass = true
			notes = append(notes, fmt.Sprintf("the clients still sent to %s, the box that yielded (%d segments; their ARP entries, see Findings), which serves them itself under %s", passive, *r.PassiveFromClients, r.Fix))
		}
	}
	why = append(why, notes...)
	if w := r.Writes; w != nil {
		why = append(why, fmt.Sprintf("writes across the event: %d acknowledged of %d, %d lost", w.Acked, w.Attempted, w.Lost))
		if w.Lost > 0 {
			r.Pass = false
		}
	}
	r.Reason = strings.Join(why, "; ")
}

// count fills the counters the verdict reads: the observers' differences
// over the traffic and the connections by outcome.
func (r *Result) count(c Cluster, before, after snapshot) {
	r.IPVS, r.TimeExceeded, r.Frames = map[string]IPVSCounters{}, map[string]uint64{}, map[string]PortFrames{}
	for _, d := range c.Directors {
		r.IPVS[d.Node] = after.ipvs[d.Node].Sub(before.ipvs[d.Node])
		r.TimeExceeded[d.Node] = after.te[d.Node] - before.te[d.Node]
	}
	for k, v := range after.frames {
		r.Frames[k] = PortFrames{Rx: v.Rx - before.frames[k].Rx, Tx: v.Tx - before.frames[k].Tx}
	}
	r.Latency = latencies(r.Conns)
	var dirFrames uint64
	for _, d := range c.Directors {
		f := r.Frames[d.Node+"."+d.Iface]
		dirFrames += f.Rx + f.Tx
	}
	r.Share = map[int]int{}
	r.Connections = len(r.Conns)
	if r.Connections > 0 {
		r.FramesPerConn = float64(dirFrames) / float64(r.Connections)
	}
	for _, cn := range r.Conns {
		switch {
		case cn.ServedBy > 0:
			r.Served++
			r.Share[cn.ServedBy]++
		case cn.Hung:
			r.Hung++
		default:
			r.Errors++
			switch {
			case r.flapped(cn):
				r.DownErrors++
			case r.moved(cn):
				r.MovedErrors++
			}
		}
	}
}

// flapped: a connection refused or closed while its server was down is
// the flapping server's doing (MySQLFlap), not the pair's.
func (r *Result) flapped(c Conn) bool { return c.refused() && during(r.Outages, c) }

// moved: a connection reset or closed while the VIP moved under it. The
// BACKUP took the VIP during the event and a complete capture saw clients
// still send to the passive box: a connection whose segments reach the
// box that has no entry for it is reset there (IPVS schedules SYNs only).
// The takeover's doing, on any VRRP pair; not a loop, not the harness's.
func (r *Result) moved(c Conn) bool {
	return c.refused() && r.Takeovers != nil && *r.Takeovers > 0 &&
		r.PassiveFromClients != nil && *r.PassiveFromClients > 0 && r.Capture.Complete()
}

// failed: a connection neither served nor explained by a flap or a move.
func (r *Result) failed(c Conn) bool { return c.ServedBy == 0 && !r.flapped(c) && !r.moved(c) }

// loopEvidence is the positive evidence of a loop, and notes on what was
// seen but is not evidence.
func (r *Result) loopEvidence(passive string) (loop, notes []string) {
	if b := r.Bounces; b != nil && b.Bounced > 0 {
		loop = append(loop, fmt.Sprintf("%d of %d forwarded segments bounced between the directors, up to %d hops", b.Bounced, b.Forwarded, b.MaxDepth))
	}
	if p := r.IPVS[passive].InPkts; p > 0 {
		// The passive service's count is the evidence, unless a complete
		// capture shows it all came from clients: a SIGKILLed MASTER keeps
		// the VIP on its interface and still answers ARP. More than the
		// clients sent it means it re-balanced what the active box
		// forwarded, a loop whether or not it picked itself this time.
		msg := fmt.Sprintf("passive %s's service counted %d packets", passive, p)
		b, fc := r.Bounces, r.PassiveFromClients
		switch {
		case b == nil || fc == nil || !r.Capture.Complete():
			loop = append(loop, msg)
		case uint64(p) <= *fc && b.Bounced == 0:
			notes = append(notes, fmt.Sprintf("%s, no more than the %d segments clients sent it: no segment bounced", msg, *fc))
		case b.Bounced == 0:
			loop = append(loop, fmt.Sprintf("%s, more than the %d segments clients sent it: it re-balanced what the active box forwarded (to itself this time, so nothing bounced; the same setup loops when it picks the other box)", msg, *fc))
		default:
			loop = append(loop, msg)
		}
	}
	var te uint64
	for _, v := range r.TimeExceeded {
		te += v
	}
	if te > 0 {
		loop = append(loop, fmt.Sprintf("%d ICMP time exceeded", te))
	}
	if cs := r.Capture; !cs.Complete() {
		notes = append(notes, fmt.Sprintf("capture incomplete: %d frames kept, %d dropped by the kernel, %d past the cap of %d", cs.Frames, cs.KernelDrops, cs.Overflow, maxFrames))
	}
	if r.Takeovers != nil {
		note := fmt.Sprintf("during the event the BACKUP took the VIP %d time(s)", *r.Takeovers)
		if r.Scenario != MySQLFlap { // nothing to heal
			note += fmt.Sprintf("; %.2fs after the heal the MASTER alone held it", r.Failover.Seconds())
		}
		notes = append(notes, note)
	}
	if r.DownErrors > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d refused or closed while %s's servers were down (%s), not loop evidence", r.DownErrors, r.Connections, passive, firstError(r.Conns, r.flapped)))
	}
	if len(r.Outages) > 0 {
		notes = append(notes, fmt.Sprintf("%s's servers were down %d time(s), %s in all", passive, len(r.Outages), outageTime(r.Outages).Round(time.Millisecond)))
	}
	if r.MovedErrors > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d reset or closed as the VIP moved under them (clients still sent %d segments to %s), not loop evidence: %s",
			r.MovedErrors, r.Connections, *r.PassiveFromClients, passive, firstError(r.Conns, r.moved)))
	}
	return loop, notes
}

// failures says how many connections got no answer and why, by cause
// ("3 of 20 failed: 2 handshake timeout, 1 reset (first: ...)"), leaving
// out those a flap or a move explains; "" when none did.
func (r *Result) failures() string {
	causes := map[string]int{}
	n := 0
	for _, c := range r.Conns {
		if !r.failed(c) {
			continue
		}
		n++
		causes[cmp.Or(c.Cause, "other error")]++
	}
	if n == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(causes)) {
		parts = append(parts, fmt.Sprintf("%d %s", causes[k], k))
	}
	first := firstError(r.Conns, r.failed)
	return fmt.Sprintf("%d of %d failed: %s (first: %s)", n, r.Connections, strings.Join(parts, ", "), first)
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

func outageTime(outages []Outage) time.Duration {
	var d time.Duration
	for _, o := range outages {
		d += o.To.Sub(o.From)
	}
	return d
}

func shareString(share map[int]int) string {
	ids := make([]int, 0, len(share))
	for id := range share {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%d:%d", id, share[id]))
	}
	return strings.Join(parts, " ")
}
