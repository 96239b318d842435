package scenarios

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// steady is the evidence of a steady-state run under fix, judged on d2.
func steady(fix Fix, conns ...Conn) Evidence {
	return Evidence{Scenario: Steady, Fix: fix, Expected: Expected(fix, Steady), Passive: "d2", WantServers: 2, Conns: conns}
}

func served(ids ...int) []Conn {
	var cs []Conn
	for _, id := range ids {
		cs = append(cs, Conn{ServedBy: id})
	}
	return cs
}

// judged checks Judge(e) against the verdict, pass and reasons wanted.
func judged(t *testing.T, e Evidence, verdict Verdict, pass bool, reasons ...Reason) {
	t.Helper()
	j := Judge(e)
	if j.Verdict != verdict || j.Pass != pass {
		t.Errorf("got %s pass=%v (%s); want %s pass=%v", j.Verdict, j.Pass, reasonsText(j.Reasons), verdict, pass)
	}
	if d := cmp.Diff(reasons, j.Reasons, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("reasons (-want +got):\n%s", d)
	}
}

func TestJudge(t *testing.T) {
	complete := &CaptureStats{Frames: 500}
	noBounce := &Bounces{Forwarded: 40, MaxDepth: 1}
	with := func(e Evidence, f func(*Evidence)) Evidence { f(&e); return e }
	hung := Conn{Hung: true, Cause: "handshake timeout", Error: "i/o timeout"}
	closed := Conn{Cause: "closed", Error: "invalid connection"}
	for _, tc := range []struct {
		name    string
		e       Evidence
		verdict Verdict
		pass    bool
		reasons []Reason
	}{
		{"clean and balanced", steady(FixFwmark, served(1, 2, 1, 2)...), Clean, true,
			[]Reason{{Kind: ReasonServed, N: 4, Of: 4, Share: map[int]int{1: 2, 2: 2}}}},
		{"clean but one box serves all", steady(FixFwmark, served(1, 1, 1)...), NoBalance, false,
			[]Reason{{Kind: ReasonServed, N: 3, Of: 3, Share: map[int]int{1: 3}, Want: 2}}},
		{"passive box counted packets", with(steady(FixNone, served(1, 2)...), func(e *Evidence) { e.PassivePkts = 88 }), Loop, true,
			[]Reason{{Kind: ReasonPassiveCounted, Loop: true, Node: "d2", N: 88}}},
		{"ttl ran out", with(steady(FixNone, append(served(1), Conn{Cause: "unreachable", Error: "connect: no route to host"})...), func(e *Evidence) { e.TimeExceeded = 3 }), Loop, true,
			[]Reason{{Kind: ReasonTimeExceeded, Loop: true, N: 3},
				{Kind: ReasonFailed, N: 1, Of: 2, Causes: map[string]int{"unreachable": 1}, First: "connect: no route to host"}}},
		// failures without loop evidence are the host's or the harness's
		// (a lab starved of CPU): never a verdict on the pair
		{"hung connection, no loop evidence", steady(FixFwmark, append(served(1, 2), hung)...), Unserved, false,
			[]Reason{{Kind: ReasonFailed, N: 1, Of: 3, Causes: map[string]int{"handshake timeout": 1}, First: "i/o timeout", Unserved: true}}},
		{"closed under load, as the plan said", with(steady(FixFwmark, append(served(1, 2), closed, closed)...), func(e *Evidence) { e.UnservedBy = "vrrp_strict" }), Unserved, false,
			[]Reason{{Kind: ReasonFailed, N: 2, Of: 4, Causes: map[string]int{"closed": 2}, First: "invalid connection", Unserved: true, Why: "vrrp_strict"}}},
		{"loop expected, only hangs", steady(FixNone, append(served(1, 2), Conn{Hung: true, Cause: "answer timeout"})...), Unserved, false,
			[]Reason{{Kind: ReasonFailed, N: 1, Of: 3, Causes: map[string]int{"answer timeout": 1}, Unserved: true}}},
		{"loop with hangs", with(steady(FixNone, append(served(1, 2), hung)...), func(e *Evidence) { e.PassivePkts = 12 }), Loop, true,
			[]Reason{{Kind: ReasonPassiveCounted, Loop: true, Node: "d2", N: 12},
				{Kind: ReasonFailed, N: 1, Of: 3, Causes: map[string]int{"handshake timeout": 1}, First: "i/o timeout"}}},
		{"loop expected, none seen", steady(FixNone, served(1, 2)...), Clean, false,
			[]Reason{{Kind: ReasonServed, N: 2, Of: 2, Share: map[int]int{1: 1, 2: 1}}}},
		{"writes survived", with(steady(FixFwmark, served(1, 2)...), func(e *Evidence) { e.Writes = &WriteStats{Attempted: 24, Acked: 20} }), Clean, true,
			[]Reason{{Kind: ReasonServed, N: 2, Of: 2, Share: map[int]int{1: 1, 2: 1}}, {Kind: ReasonWritesKept, N: 20, Of: 24}}},
		{"an acknowledged write lost", with(steady(FixFwmark, served(1, 2)...), func(e *Evidence) { e.Writes = &WriteStats{Attempted: 24, Acked: 20, Lost: 1} }), Clean, false,
			[]Reason{{Kind: ReasonServed, N: 2, Of: 2, Share: map[int]int{1: 1, 2: 1}}, {Kind: ReasonWritesKept, N: 20, Of: 24, Lost: 1}}},
		{"capture saw bounces", with(steady(FixNone, served(1, 2)...), func(e *Evidence) {
			e.PassivePkts, e.Bounces, e.Capture, e.PassiveFromClients = 30, &Bounces{Forwarded: 40, Bounced: 3, MaxDepth: 64}, complete, new(uint64(4))
		}), Loop, true,
			[]Reason{{Kind: ReasonBounced, Loop: true, N: 3, Of: 40, Hops: 64}, {Kind: ReasonPassiveCounted, Loop: true, Node: "d2", N: 30}}},
		{"passive count from clients, no bounce", with(steady(FixFwmark, served(1, 2)...), func(e *Evidence) {
			e.PassivePkts, e.Bounces, e.Capture, e.PassiveFromClients = 7, noBounce, complete, new(uint64(9))
		}), Clean, true,
			[]Reason{{Kind: ReasonServed, N: 2, Of: 2, Share: map[int]int{1: 1, 2: 1}}, {Kind: ReasonPassiveFromClients, Node: "d2", N: 7, FromClients: 9}}},
		// the passive picked itself for what the active forwarded: no
		// bounce, but a loop waiting for the day it picks the other box
		{"passive re-balanced to itself", with(steady(FixNone, served(1, 2)...), func(e *Evidence) {
			e.PassivePkts, e.Bounces, e.Capture, e.PassiveFromClients = 30, noBounce, complete, new(uint64(4))
		}), Loop, true,
			[]Reason{{Kind: ReasonPassiveRebalanced, Loop: true, Node: "d2", N: 30, FromClients: 4}}},
		// a capture that lost frames cannot clear the passive's count
		{"passive count, capture dropped frames", with(steady(FixFwmark, served(1, 2)...), func(e *Evidence) {
			e.PassivePkts, e.Bounces, e.Capture = 7, noBounce, &CaptureStats{Frames: 500, KernelDrops: 12}
		}), Loop, false,
			[]Reason{{Kind: ReasonPassiveCounted, Loop: true, Node: "d2", N: 7}, {Kind: ReasonCaptureIncomplete, N: 500, Drops: 12}}},
		{"clean, capture past its cap", with(steady(FixFwmark, served(1, 2)...), func(e *Evidence) {
			e.Bounces, e.Capture = noBounce, &CaptureStats{Frames: 200000, Overflow: 9}
		}), Clean, true,
			[]Reason{{Kind: ReasonServed, N: 2, Of: 2, Share: map[int]int{1: 1, 2: 1}}, {Kind: ReasonCaptureIncomplete, N: 200000, Overflow: 9}}},
		// A third box never holds the VIP: whatever its service counts,
		// it balanced from what a director forwarded, a loop even with a
		// complete capture that saw nothing bounce.
		{"a third box counted", with(steady(FixFwmark, served(1, 2)...), func(e *Evidence) {
			e.Others, e.Bounces, e.Capture, e.PassiveFromClients = map[string]uint32{"d3": 17}, noBounce, complete, new(uint64(0))
		}), Loop, false,
			[]Reason{{Kind: ReasonOtherCounted, Loop: true, Node: "d3", N: 17}}},
		{"a third box counted nothing", with(steady(FixFwmark, served(1, 2)...), func(e *Evidence) {
			e.Others, e.Bounces, e.Capture, e.PassiveFromClients = map[string]uint32{"d3": 0}, noBounce, complete, new(uint64(0))
		}), Clean, true,
			[]Reason{{Kind: ReasonServed, N: 2, Of: 2, Share: map[int]int{1: 1, 2: 1}}}},
	} {
		t.Run(tc.name, func(t *testing.T) { judged(t, tc.e, tc.verdict, tc.pass, tc.reasons...) })
	}
}

// A flapping server's refusals are not loop evidence; a failure outside
// its outages, or a hang inside one, still is.
func TestJudgeFlap(t *testing.T) {
	t0 := time.Now()
	failed := func(at, took time.Duration, err, cause string) Conn {
		return Conn{Start: t0.Add(at), Latency: took, Error: err, Hung: err == "i/o timeout", Cause: cause}
	}
	outages := Reason{Kind: ReasonOutages, Node: "d2", N: 1, Took: 5 * time.Second}
	share := Reason{Kind: ReasonServed, N: 2, Of: 3, Share: map[int]int{1: 1, 2: 1}}
	unserved := func(cause, first string) Reason {
		return Reason{Kind: ReasonFailed, N: 1, Of: 3, Causes: map[string]int{cause: 1}, First: first, Unserved: true}
	}
	for _, tc := range []struct {
		name    string
		failed  Conn
		want    Verdict
		reasons []Reason
	}{
		{"refused while down", failed(time.Second, time.Millisecond, "connection refused", "refused"), Clean,
			[]Reason{share, {Kind: ReasonDownErrors, Node: "d2", N: 1, Of: 3, First: "connection refused"}, outages}},
		{"closed as it went down", failed(-time.Second, 1500*time.Millisecond, "invalid connection", "closed"), Clean,
			[]Reason{share, {Kind: ReasonDownErrors, Node: "d2", N: 1, Of: 3, First: "invalid connection"}, outages}},
		// not the flap's, and no loop evidence either: not a verdict
		{"refused once up again", failed(6*time.Second, time.Millisecond, "connection refused", "refused"), Unserved,
			[]Reason{unserved("refused", "connection refused"), outages}},
		{"hung while down", failed(time.Second, 3*time.Second, "i/o timeout", "answer timeout"), Unserved,
			[]Reason{unserved("answer timeout", "i/o timeout"), outages}},
		// an ICMP error while the server was down is not excused; loop
		// evidence is the directors' time exceeded count
		{"unreachable while down", failed(time.Second, 5*time.Millisecond, "no route to host", "unreachable"), Unserved,
			[]Reason{unserved("unreachable", "no route to host"), outages}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Evidence{Scenario: MySQLFlap, Fix: FixFwmark, Expected: Expected(FixFwmark, MySQLFlap), Passive: "d2", WantServers: 2,
				Conns: []Conn{{ServedBy: 1}, {ServedBy: 2}, tc.failed}, Outages: []Outage{{From: t0, To: t0.Add(5 * time.Second)}}}
			judged(t, e, tc.want, tc.want == Clean, tc.reasons...)
		})
	}
}

// TestJudgeStuckClients: where a BACKUP's takeover may leave the clients
// with it (split brain, isolation, advert loss under backup_only or
// REDIRECT), CLEAN passes, and NO-BALANCE passes only when the capture saw
// the clients send to the passive box; elsewhere the table decides alone.
func TestJudgeStuckClients(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fix         Fix
		ev          Event
		conns       []Conn
		fromClients uint64
		want        bool
		note        ReasonKind
	}{
		{"split brain, clients back", FixBackupOnly, SplitBrain, served(1, 2), 0, true, ReasonClientsBack},
		{"split brain, clients stayed", FixBackupOnly, SplitBrain, served(2, 2), 40, true, ""},
		{"advert loss, clients stayed", FixRedirect, AdvertLoss50, served(2, 2), 40, true, ReasonClientsStayed},
		{"advert loss, one box served, clients at the MASTER", FixBackupOnly, AdvertLoss50, served(1, 1), 0, false, ""},
		{"advert loss under fwmark: the table alone", FixFwmark, AdvertLoss50, served(2, 2), 40, false, ""},
		{"steady state under backup_only: the table alone", FixBackupOnly, Steady, served(2, 2), 40, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Evidence{Scenario: tc.ev, Fix: tc.fix, Expected: Expected(tc.fix, tc.ev), Passive: "d2", WantServers: 2, Conns: tc.conns,
				Bounces: &Bounces{}, Capture: &CaptureStats{Frames: 500}, PassiveFromClients: new(tc.fromClients), PassivePkts: uint32(tc.fromClients)}
			j := Judge(e)
			if j.Pass != tc.want {
				t.Errorf("%s (expected %s): pass %v, want %v: %s", j.Verdict, e.Expected, j.Pass, tc.want, reasonsText(j.Reasons))
			}
			if got := kinds(j.Reasons); tc.note != "" && !slices.Contains(got, tc.note) {
				t.Errorf("reasons %v: want a %s note", got, tc.note)
			}
		})
	}
}

// TestJudgeMoved: connections reset or closed while the VIP moved (a
// takeover during the event, clients still sending to the passive box in
// a complete capture) are the takeover's, not a loop nor the harness's;
// without a takeover, without clients at the passive box, or as
// timeouts, they stay failures; loop evidence still wins.
func TestJudgeMoved(t *testing.T) {
	closed := Conn{Error: "invalid connection", Cause: "closed"}
	for _, tc := range []struct {
		name        string
		takeovers   int
		fromClients uint64
		failed      Conn
		bounced     int
		want        Verdict
	}{
		{"closed as the VIP moved", 1, 14, closed, 0, Clean},
		{"no takeover", 0, 14, closed, 0, Unserved},
		{"clients never at the passive box", 1, 0, closed, 0, Unserved},
		{"a timeout is no move", 1, 14, Conn{Error: "i/o timeout", Cause: "answer timeout", Hung: true}, 0, Unserved},
		{"bounces: a loop", 1, 14, closed, 3, Loop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Evidence{Scenario: AdvertLoss50, Fix: FixFwmark, Expected: Expected(FixFwmark, AdvertLoss50), Passive: "d2", WantServers: 2,
				Conns: []Conn{{ServedBy: 1}, {ServedBy: 2}, tc.failed}, Takeovers: new(tc.takeovers), Healed: 1500 * time.Millisecond,
				Bounces: &Bounces{Bounced: tc.bounced, Forwarded: 10, MaxDepth: 5}, Capture: &CaptureStats{Frames: 500},
				PassiveFromClients: new(tc.fromClients), PassivePkts: uint32(tc.fromClients)}
			j := Judge(e)
			if j.Verdict != tc.want {
				t.Errorf("got %s, want %s: %s", j.Verdict, tc.want, reasonsText(j.Reasons))
			}
			moved := Reason{Kind: ReasonMovedErrors, Node: "d2", N: 1, Of: 3, FromClients: 14, First: "invalid connection"}
			if tc.want == Clean && !slices.ContainsFunc(j.Reasons, func(r Reason) bool { return cmp.Equal(r, moved) }) {
				t.Errorf("the move is not said: %+v", j.Reasons)
			}
			takeovers := Reason{Kind: ReasonTakeovers, N: uint64(tc.takeovers), Took: 1500 * time.Millisecond}
			if !slices.ContainsFunc(j.Reasons, func(r Reason) bool { return cmp.Equal(r, takeovers) }) {
				t.Errorf("the takeovers are not said: %+v", j.Reasons)
			}
		})
	}
}

// TestReasonText: each kind of reason renders its values, and the
// judgement's text is its reasons in order.
func TestReasonText(t *testing.T) {
	for _, tc := range []struct {
		r    Reason
		want string
	}{
		{Reason{Kind: ReasonBounced, N: 3, Of: 40, Hops: 64}, "3 of 40 forwarded segments bounced between the directors, up to 64 hops"},
		{Reason{Kind: ReasonFailed, N: 2, Of: 4, Causes: map[string]int{"closed": 1, "reset": 1}, First: "EOF", Unserved: true},
			"2 of 4 failed: 1 closed, 1 reset (first: EOF), without loop evidence: not a verdict on the pair"},
		{Reason{Kind: ReasonServed, N: 3, Of: 3, Share: map[int]int{2: 1, 1: 2}, Want: 3}, "3 of 3 served, by server_id 1:2 2:1; want 3 serving"},
		{Reason{Kind: ReasonOutages, Node: "d2", N: 2, Took: 4200 * time.Millisecond}, "d2's servers were down 2 time(s), 4.2s in all"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.r.Kind, got, tc.want)
		}
	}
	if got := reasonsText([]Reason{{Kind: ReasonTimeExceeded, N: 3}, {Kind: ReasonClientsBack}}); got != "3 ICMP time exceeded; the clients were back with the MASTER by the reads (their ARP entries, see Findings)" {
		t.Errorf("reasons text %q", got)
	}
}

func kinds(rs []Reason) []ReasonKind {
	var out []ReasonKind
	for _, r := range rs {
		out = append(out, r.Kind)
	}
	return out
}
