package scenarios

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// A Reason is one thing the judge weighed, as values; String renders it.
type Reason struct {
	Kind ReasonKind `json:"kind"`
	// Loop: it is loop evidence.
	Loop bool   `json:"loop,omitempty"`
	Node string `json:"node,omitempty"`
	// N of Of: segments, packets, connections, writes, takeovers, as
	// Kind says.
	N  uint64 `json:"n,omitempty"`
	Of uint64 `json:"of,omitempty"`
	// Hops: how deep the deepest bounce went.
	Hops int `json:"hops,omitempty"`
	// FromClients: segments the capture saw clients send the passive box.
	FromClients uint64 `json:"from_clients,omitempty"`
	// Causes and First: failed connections by cause, and the first error.
	Causes map[string]int `json:"causes,omitempty"`
	First  string         `json:"first,omitempty"`
	// Unserved: failures without loop evidence, the verdict UNSERVED;
	// Why the plan's cause, if it knew one.
	Unserved bool   `json:"unserved,omitempty"`
	Why      string `json:"why,omitempty"`
	// Share: served connections by @@server_id; Want: how many should
	// have served (NO-BALANCE).
	Share map[int]int `json:"share,omitempty"`
	Want  int         `json:"want,omitempty"`
	Lost  int         `json:"lost,omitempty"`
	Drops uint64      `json:"kernel_drops,omitempty"`
	// Overflow: frames past the capture's cap.
	Overflow uint64 `json:"overflow,omitempty"`
	// Took: from the heal to the MASTER alone holding the VIP
	// (Takeovers), or the servers' time down (Outages).
	Took time.Duration `json:"took_ns,omitempty"`
	Fix  Fix           `json:"fix,omitempty"`
}

// ReasonKind names what a Reason says.
type ReasonKind string

// The kinds of reasons.
const (
	// Loop evidence.
	ReasonBounced           ReasonKind = "bounced"            // N of Of forwarded segments bounced, Hops deep
	ReasonPassiveCounted    ReasonKind = "passive-counted"    // Node, the passive box, counted N packets
	ReasonPassiveRebalanced ReasonKind = "passive-rebalanced" // ... more than the FromClients clients sent it
	ReasonOtherCounted      ReasonKind = "other-counted"      // Node, BACKUP throughout, counted N packets
	ReasonTimeExceeded      ReasonKind = "time-exceeded"      // N ICMP time exceeded
	// What decided otherwise.
	ReasonFailed ReasonKind = "failed" // N of Of connections failed, by Causes
	ReasonServed ReasonKind = "served" // N of Of served, by Share (Want: how many should have)
	// Notes.
	ReasonPassiveFromClients ReasonKind = "passive-from-clients" // Node counted N, no more than FromClients from clients
	ReasonClientsBack        ReasonKind = "clients-back"         // the clients were back with the MASTER
	ReasonClientsStayed      ReasonKind = "clients-stayed"       // they sent N segments to Node, which serves them under Fix
	ReasonCaptureIncomplete  ReasonKind = "capture-incomplete"   // N frames kept, Drops, Overflow
	ReasonTakeovers          ReasonKind = "takeovers"            // the BACKUP took the VIP N times; Took after the heal
	ReasonDownErrors         ReasonKind = "down-errors"          // N of Of refused while Node's servers were down
	ReasonOutages            ReasonKind = "outages"              // Node's servers down N times, Took in all
	ReasonMovedErrors        ReasonKind = "moved-errors"         // N of Of reset as the VIP moved
	ReasonWritesKept         ReasonKind = "writes"               // N acknowledged of Of, Lost lost
)

func (r Reason) String() string {
	switch r.Kind {
	case ReasonBounced:
		return fmt.Sprintf("%d of %d forwarded segments bounced between the directors, up to %d hops", r.N, r.Of, r.Hops)
	case ReasonPassiveCounted:
		return fmt.Sprintf("passive %s's service counted %d packets", r.Node, r.N)
	case ReasonPassiveRebalanced:
		return fmt.Sprintf("passive %s's service counted %d packets, more than the %d segments clients sent it: it re-balanced what the active box forwarded (to itself this time, so nothing bounced; the same setup loops when it picks the other box)", r.Node, r.N, r.FromClients)
	case ReasonPassiveFromClients:
		return fmt.Sprintf("passive %s's service counted %d packets, no more than the %d segments clients sent it: no segment bounced", r.Node, r.N, r.FromClients)
	case ReasonOtherCounted:
		return fmt.Sprintf("%s, BACKUP throughout, counted %d packets in its service: it balanced what the MASTER forwarded", r.Node, r.N)
	case ReasonTimeExceeded:
		return fmt.Sprintf("%d ICMP time exceeded", r.N)
	case ReasonFailed:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Causes)) {
			parts = append(parts, fmt.Sprintf("%d %s", r.Causes[k], k))
		}
		s := fmt.Sprintf("%d of %d failed: %s (first: %s)", r.N, r.Of, strings.Join(parts, ", "), r.First)
		switch {
		case r.Unserved && r.Why != "":
			s += ", without loop evidence, as the plan said: " + r.Why
		case r.Unserved:
			s += ", without loop evidence: not a verdict on the pair"
		}
		return s
	case ReasonServed:
		s := fmt.Sprintf("%d of %d served, by server_id %s", r.N, r.Of, shareString(r.Share))
		if r.Want > 0 {
			s += fmt.Sprintf("; want %d serving", r.Want)
		}
		return s
	case ReasonClientsBack:
		return "the clients were back with the MASTER by the reads (their ARP entries, see Findings)"
	case ReasonClientsStayed:
		return fmt.Sprintf("the clients still sent to %s, the box that yielded (%d segments; their ARP entries, see Findings), which serves them itself under %s", r.Node, r.N, r.Fix)
	case ReasonCaptureIncomplete:
		return fmt.Sprintf("capture incomplete: %d frames kept, %d dropped by the kernel, %d past the cap of %d", r.N, r.Drops, r.Overflow, maxFrames)
	case ReasonTakeovers:
		s := fmt.Sprintf("during the event the BACKUP took the VIP %d time(s)", r.N)
		if r.Took > 0 {
			s += fmt.Sprintf("; %.2fs after the heal the MASTER alone held it", r.Took.Seconds())
		}
		return s
	case ReasonDownErrors:
		return fmt.Sprintf("%d of %d refused or closed while %s's servers were down (%s), not loop evidence", r.N, r.Of, r.Node, r.First)
	case ReasonOutages:
		return fmt.Sprintf("%s's servers were down %d time(s), %s in all", r.Node, r.N, r.Took.Round(time.Millisecond))
	case ReasonMovedErrors:
		return fmt.Sprintf("%d of %d reset or closed as the VIP moved under them (clients still sent %d segments to %s), not loop evidence: %s", r.N, r.Of, r.FromClients, r.Node, r.First)
	case ReasonWritesKept:
		return fmt.Sprintf("writes across the event: %d acknowledged of %d, %d lost", r.N, r.Of, r.Lost)
	}
	return string(r.Kind)
}

func outageTime(outages []Outage) time.Duration {
	var d time.Duration
	for _, o := range outages {
		d += o.To.Sub(o.From)
	}
	return d
}
