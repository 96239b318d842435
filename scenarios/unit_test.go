package scenarios

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/go-cmp/cmp"
	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"golang.org/x/net/dns/dnsmessage"
)

func testCluster(t *testing.T) Cluster {
	t.Helper()
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(topo)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCluster(t *testing.T) {
	c := testCluster(t)
	want := Cluster{VIP: netip.MustParseAddr("192.168.1.200"), Port: 3306, VRID: 51, Directors: []Director{
		{Node: "d1", Iface: "eth0", Addr: netip.MustParseAddr("192.168.1.233"), MAC: mustMAC("02:00:c0:a8:01:e9"), Priority: 150, Mark: 3, Serves: true},
		{Node: "d2", Iface: "eth0", Addr: netip.MustParseAddr("192.168.1.213"), MAC: mustMAC("02:00:c0:a8:01:d5"), Priority: 100, Mark: 4, Serves: true},
	}}
	if diff := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("cluster (-want +got):\n%s", diff)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, _ := net.ParseMAC(s)
	return m
}

// TestDirectorConfigGolden: the lvslab director's rendered configs pass
// its own validation (director.ParseConfig) and match the files under
// fixtures/golden; LVSLAB_UPDATE_GOLDEN=1 rewrites them.
func TestDirectorConfigGolden(t *testing.T) {
	c := testCluster(t)
	for _, tc := range []struct {
		name  string
		i     int
		fix   Fix
		learn bool
	}{{"d1-none", 0, FixNone, false}, {"d2-fwmark", 1, FixFwmark, false}, {"d1-fwmark-learn", 0, FixFwmark, true}, {"d2-backup-only", 1, FixBackupOnly, false}} {
		got, err := (&GoDirector{LearnPeerMAC: tc.learn}).Config(c, tc.i, tc.fix, "/run/lvslab/lab/"+c.Directors[tc.i].Node+"/director.sock")
		if err != nil {
			t.Fatal(err)
		}
		name := "director-" + tc.name + ".yaml"
		if _, err := director.ParseConfig(name, []byte(got)); err != nil {
			t.Errorf("the rendered config does not validate: %v", err)
		}
		labtest.Golden(t, "../fixtures/golden/"+name, got)
	}
	if _, err := (&GoDirector{}).Config(c, 0, FixRedirect, "/x.sock"); err == nil {
		t.Errorf("the lvslab director rendered a config for fix redirect, which it does not do")
	}
}

// TestKeepalivedConfigGolden compares the rendered configs with the files
// under fixtures/golden; LVSLAB_UPDATE_GOLDEN=1 rewrites them.
func TestKeepalivedConfigGolden(t *testing.T) {
	c := testCluster(t)
	for _, tc := range []struct {
		name string
		i    int
		fix  Fix
	}{{"d1-none", 0, FixNone}, {"d2-none", 1, FixNone}, {"d1-fwmark", 0, FixFwmark}, {"d2-fwmark", 1, FixFwmark}, {"d2-backup-only", 1, FixBackupOnly}, {"d2-redirect", 1, FixRedirect}} {
		got, err := (&Keepalived{}).Config(c, tc.i, tc.fix, "/run/lvslab/lab/"+c.Directors[tc.i].Node+"/keepalived")
		if err != nil {
			t.Fatal(err)
		}
		labtest.Golden(t, "../fixtures/golden/keepalived-"+tc.name+".conf", got)
	}
}

// A third box never holds the VIP: whatever its service counts, it
// balanced from what a director forwarded, a loop even with a complete
// capture that saw nothing bounce.
func TestJudgeThirdBox(t *testing.T) {
	c := testCluster(t)
	c.Directors = append(c.Directors, Director{Node: "d3"})
	for _, tc := range []struct {
		d3   uint32
		want Verdict
	}{{0, Clean}, {17, Loop}} {
		r := &Result{Fix: FixFwmark, Expected: Clean, Conns: []Conn{{ServedBy: 1}, {ServedBy: 2}},
			Bounces: &Bounces{Forwarded: 40, MaxDepth: 1}, Capture: &CaptureStats{Frames: 500}, PassiveFromClients: new(uint64(0))}
		after := snapshot{ipvs: map[string]IPVSCounters{"d3": {Services: 1, InPkts: tc.d3}}}
		r.judge(c, "d2", 2, snapshot{}, after)
		if r.Verdict != tc.want || tc.want == Loop && !strings.Contains(r.Reason, "d3, BACKUP throughout, counted 17 packets") {
			t.Errorf("d3 counted %d: got %s %q; want %s", tc.d3, r.Verdict, r.Reason, tc.want)
		}
	}
}

func TestJudge(t *testing.T) {
	c := testCluster(t)
	served := func(ids ...int) []Conn {
		var cs []Conn
		for _, id := range ids {
			cs = append(cs, Conn{ServedBy: id})
		}
		return cs
	}
	snap := func(backupPkts uint32, te uint64) snapshot {
		return snapshot{ipvs: map[string]IPVSCounters{"d2": {Services: 1, InPkts: backupPkts}}, te: map[string]uint64{"d2": te}}
	}
	for _, tc := range []struct {
		name        string
		fix         Fix
		conns       []Conn
		after       snapshot
		wantVerdict Verdict
		wantPass    bool
		wantReason  string
		writes      *WriteStats
		bounces     *Bounces
		capture     *CaptureStats
		fromClients *uint64
	}{
		{"clean and balanced", FixFwmark, served(1, 2, 1, 2), snap(0, 0), Clean, true, "4 of 4 served, by server_id 1:2 2:2", nil, nil, nil, nil},
		{"clean but one box serves all", FixFwmark, served(1, 1, 1), snap(0, 0), NoBalance, false, "3 of 3 served, by server_id 1:3; want 2 serving", nil, nil, nil, nil},
		{"passive box counted packets", FixNone, served(1, 2), snap(88, 0), Loop, true, "passive d2's service counted 88 packets", nil, nil, nil, nil},
		{"ttl ran out", FixNone, append(served(1), Conn{Cause: "unreachable", Error: "connect: no route to host"}), snap(0, 3), Loop, true, "3 ICMP time exceeded; 1 of 2 failed: 1 unreachable (first: connect: no route to host)", nil, nil, nil, nil},
		// failures without loop evidence are the host's or the harness's
		// (a lab starved of CPU): never a verdict on the pair
		{"hung connection, no loop evidence", FixFwmark, append(served(1, 2), Conn{Hung: true, Cause: "handshake timeout", Error: "i/o timeout"}), snap(0, 0), Unserved, false, "1 of 3 failed: 1 handshake timeout (first: i/o timeout), without loop evidence", nil, nil, nil, nil},
		{"closed under load, no loop evidence", FixFwmark, append(served(1, 2), Conn{Cause: "closed", Error: "invalid connection"}, Conn{Cause: "closed", Error: "invalid connection"}), snap(0, 0), Unserved, false, "2 of 4 failed: 2 closed", nil, nil, nil, nil},
		{"loop expected, only hangs", FixNone, append(served(1, 2), Conn{Hung: true, Cause: "answer timeout"}), snap(0, 0), Unserved, false, "1 of 3 failed: 1 answer timeout", nil, nil, nil, nil},
		{"loop with hangs", FixNone, append(served(1, 2), Conn{Hung: true, Cause: "handshake timeout"}), snap(12, 0), Loop, true, "passive d2's service counted 12 packets; 1 of 3 failed: 1 handshake timeout", nil, nil, nil, nil},
		{"loop expected, none seen", FixNone, served(1, 2), snap(0, 0), Clean, false, "2 of 2 served", nil, nil, nil, nil},
		{"writes survived", FixFwmark, served(1, 2), snap(0, 0), Clean, true, "20 acknowledged of 24, 0 lost", &WriteStats{Attempted: 24, Acked: 20}, nil, nil, nil},
		{"an acknowledged write lost", FixFwmark, served(1, 2), snap(0, 0), Clean, false, "20 acknowledged of 24, 1 lost", &WriteStats{Attempted: 24, Acked: 20, Lost: 1}, nil, nil, nil},
		{"capture saw bounces", FixNone, served(1, 2), snap(30, 0), Loop, true, "3 of 40 forwarded segments bounced between the directors, up to 64 hops; passive d2's service counted 30 packets", nil, &Bounces{Forwarded: 40, Bounced: 3, MaxDepth: 64}, nil, nil},
		{"passive count from clients, no bounce", FixFwmark, served(1, 2), snap(7, 0), Clean, true, "passive d2's service counted 7 packets, no more than the 9 segments clients sent it: no segment bounced", nil, &Bounces{Forwarded: 40, MaxDepth: 1}, &CaptureStats{Frames: 500}, new(uint64(9))},
		// the passive picked itself for what the active forwarded: no
		// bounce, but a loop waiting for the day it picks the other box
		{"passive re-balanced to itself", FixNone, served(1, 2), snap(30, 0), Loop, true, "passive d2's service counted 30 packets, more than the 4 segments clients sent it: it re-balanced what the active box forwarded", nil, &Bounces{Forwarded: 40, MaxDepth: 1}, &CaptureStats{Frames: 500}, new(uint64(4))},
		// a capture that lost frames cannot clear the passive's count
		{"passive count, capture dropped frames", FixFwmark, served(1, 2), snap(7, 0), Loop, false, "passive d2's service counted 7 packets; capture incomplete: 500 frames kept, 12 dropped by the kernel, 0 past the cap", nil, &Bounces{Forwarded: 40, MaxDepth: 1}, &CaptureStats{Frames: 500, KernelDrops: 12}, nil},
		{"clean, capture past its cap", FixFwmark, served(1, 2), snap(0, 0), Clean, true, "capture incomplete: 200000 frames kept, 0 dropped by the kernel, 9 past the cap", nil, &Bounces{Forwarded: 40, MaxDepth: 1}, &CaptureStats{Frames: 200000, Overflow: 9}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Result{Fix: tc.fix, Expected: Expected(tc.fix, Steady), Conns: tc.conns, Writes: tc.writes, Bounces: tc.bounces, Capture: tc.capture, PassiveFromClients: tc.fromClients}
			r.judge(c, "d2", 2, snap(0, 0), tc.after)
			if r.Verdict != tc.wantVerdict || r.Pass != tc.wantPass || !strings.Contains(r.Reason, tc.wantReason) {
				t.Errorf("got %s pass=%v %q; want %s pass=%v containing %q", r.Verdict, r.Pass, r.Reason, tc.wantVerdict, tc.wantPass, tc.wantReason)
			}
		})
	}
}

// A flapping server's refusals are not loop evidence; a failure outside
// its outages, or a hang inside one, still is.
func TestJudgeFlap(t *testing.T) {
	c := testCluster(t)
	t0 := time.Now()
	failed := func(at, took time.Duration, err, cause string) Conn {
		return Conn{Start: t0.Add(at), Latency: took, Error: err, Hung: err == "i/o timeout", Cause: cause}
	}
	for _, tc := range []struct {
		name   string
		failed Conn
		want   Verdict
		reason string
	}{
		{"refused while down", failed(time.Second, time.Millisecond, "connection refused", "refused"), Clean, "1 of 3 refused or closed while d2's servers were down (connection refused), not loop evidence"},
		{"closed as it went down", failed(-time.Second, 1500*time.Millisecond, "invalid connection", "closed"), Clean, "1 of 3 refused or closed while d2's servers were down (invalid connection)"},
		// not the flap's, and no loop evidence either: not a verdict
		{"refused once up again", failed(6*time.Second, time.Millisecond, "connection refused", "refused"), Unserved, "1 of 3 failed: 1 refused (first: connection refused), without loop evidence"},
		{"hung while down", failed(time.Second, 3*time.Second, "i/o timeout", "answer timeout"), Unserved, "1 of 3 failed: 1 answer timeout (first: i/o timeout)"},
		// an ICMP error while the server was down is not excused; loop
		// evidence is the directors' time exceeded count
		{"unreachable while down", failed(time.Second, 5*time.Millisecond, "no route to host", "unreachable"), Unserved, "1 of 3 failed: 1 unreachable (first: no route to host)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Result{Fix: FixFwmark, Expected: Expected(FixFwmark, MySQLFlap), Conns: []Conn{{ServedBy: 1}, {ServedBy: 2}, tc.failed},
				Outages: []Outage{{From: t0, To: t0.Add(5 * time.Second)}}}
			none := snapshot{ipvs: map[string]IPVSCounters{"d2": {Services: 1}}, te: map[string]uint64{}}
			r.judge(c, "d2", 2, none, none)
			if r.Verdict != tc.want || !strings.Contains(r.Reason, tc.reason) || !strings.Contains(r.Reason, "d2's servers were down 1 time(s), 5s in all") {
				t.Errorf("got %s %q; want %s containing %q", r.Verdict, r.Reason, tc.want, tc.reason)
			}
		})
	}
}

// TestJudgeStuckClients: where a BACKUP's takeover may leave the clients
// with it (split brain, isolation, advert loss under backup_only or
// REDIRECT), CLEAN passes, and NO-BALANCE passes only when the capture saw
// the clients send to the passive box; elsewhere the table decides alone.
func TestJudgeStuckClients(t *testing.T) {
	c := testCluster(t)
	served := func(ids ...int) (cs []Conn) {
		for _, id := range ids {
			cs = append(cs, Conn{ServedBy: id})
		}
		return cs
	}
	for _, tc := range []struct {
		name        string
		fix         Fix
		ev          Event
		conns       []Conn
		fromClients uint64
		want        bool
	}{
		{"split brain, clients back", FixBackupOnly, SplitBrain, served(1, 2), 0, true},
		{"split brain, clients stayed", FixBackupOnly, SplitBrain, served(2, 2), 40, true},
		{"advert loss, clients stayed", FixRedirect, AdvertLoss50, served(2, 2), 40, true},
		{"advert loss, one box served, clients at the MASTER", FixBackupOnly, AdvertLoss50, served(1, 1), 0, false},
		{"advert loss under fwmark: the table alone", FixFwmark, AdvertLoss50, served(2, 2), 40, false},
		{"steady state under backup_only: the table alone", FixBackupOnly, Steady, served(2, 2), 40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Result{Fix: tc.fix, Scenario: tc.ev, Expected: Expected(tc.fix, tc.ev), Conns: tc.conns,
				Bounces: &Bounces{}, Capture: &CaptureStats{Frames: 500}, PassiveFromClients: new(tc.fromClients)}
			snap := func(p uint32) snapshot {
				return snapshot{ipvs: map[string]IPVSCounters{"d2": {Services: 1, InPkts: p}}, te: map[string]uint64{}}
			}
			r.judge(c, "d2", 2, snap(0), snap(uint32(tc.fromClients)))
			if r.Pass != tc.want {
				t.Errorf("%s (expected %s): pass %v, want %v: %s", r.Verdict, r.Expected, r.Pass, tc.want, r.Reason)
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
	c := testCluster(t)
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
			r := &Result{Fix: FixFwmark, Scenario: AdvertLoss50, Expected: Expected(FixFwmark, AdvertLoss50),
				Conns: []Conn{{ServedBy: 1}, {ServedBy: 2}, tc.failed}, Takeovers: new(tc.takeovers),
				Bounces: &Bounces{Bounced: tc.bounced, Forwarded: 10, MaxDepth: 5}, Capture: &CaptureStats{Frames: 500}, PassiveFromClients: new(tc.fromClients)}
			snap := func(p uint32) snapshot {
				return snapshot{ipvs: map[string]IPVSCounters{"d2": {Services: 1, InPkts: p}}, te: map[string]uint64{}}
			}
			r.judge(c, "d2", 2, snap(0), snap(uint32(tc.fromClients)))
			if r.Verdict != tc.want {
				t.Errorf("got %s, want %s: %s", r.Verdict, tc.want, r.Reason)
			}
			if tc.want == Clean && !strings.Contains(r.Reason, "1 of 3 reset or closed as the VIP moved under them (clients still sent 14 segments to d2)") {
				t.Errorf("the move is not said: %s", r.Reason)
			}
		})
	}
}

func TestExpected(t *testing.T) {
	for _, tc := range []struct {
		fix  Fix
		ev   Event
		want Verdict
	}{
		{FixNone, Steady, Loop},
		{FixNone, FailoverStop, Clean}, // the stopped box removed its rules
		{FixNone, FailoverKill, Loop},  // its rules stay: the loop runs in reverse
		{FixFwmark, Steady, Clean},
		{FixFwmark, FailoverStop, Clean},
		{FixFwmark, FailoverKill, Clean},
		{FixBackupOnly, Steady, Clean},
		{FixBackupOnly, FailoverStop, Clean},
		{FixBackupOnly, FailoverKill, Loop}, // its master sync daemon outlives it
		{FixNone, MySQLDown, Clean},         // nothing is forwarded any more
		{FixFwmark, MySQLDown, Clean},
		{FixRedirect, Steady, Clean},
		{FixRedirect, Switchover, Clean},  // the old MASTER's notify_backup redirects
		{FixRedirect, FailoverKill, Loop}, // a killed MASTER never redirects
		{FixNone, Switchover, Loop},       // the old MASTER runs on as BACKUP with its rules
		{FixFwmark, Switchover, Clean},
		{FixNone, Failback, Loop},
		{FixFwmark, Failback, Clean},
		{FixNone, SplitBrain, Loop}, // converged back to steady state
		{FixFwmark, AdvertLoss50, Clean},
		{FixNone, Frozen, Loop}, // the thawed MASTER returns, the BACKUP keeps its rules
		{FixBackupOnly, Frozen, Clean},
		{FixBackupOnly, FailoverDelayed, Loop}, // a SIGKILL, however slow the link
		{FixFwmark, FailoverDelayed, Clean},
		{FixNone, Isolated, Loop},
		{FixFwmark, ClientCut, Clean},
		{FixNone, MySQLFlap, Loop}, // whenever the MASTER sends to the box, the box re-balances
		{FixFwmark, MySQLFlap, Clean},
		{FixFwmark, SplitBrain, Clean},         // the box the clients stayed with balances
		{FixBackupOnly, SplitBrain, NoBalance}, // it serves them itself
		{FixRedirect, Isolated, NoBalance},
		{FixBackupOnly, ClientCut, Clean},
	} {
		if got := Expected(tc.fix, tc.ev); got != tc.want {
			t.Errorf("Expected(%s, %s): got %s, want %s", tc.fix, tc.ev, got, tc.want)
		}
	}
}

func TestTally(t *testing.T) {
	loop := func(pass bool) *Result { return &Result{Verdict: Loop, Expected: Loop, Pass: pass, Reason: "bounced"} }
	clean := &Result{Verdict: Clean, Expected: Loop, Reason: "20 of 20 served"}

	stable := Tally([]*Result{loop(true), loop(true), loop(true)})
	if stable.Verdict != Loop || !stable.Pass || stable.Counts() != "LOOP 3/3" || stable.Reason != "bounced" {
		t.Errorf("3 LOOPs: got %s pass=%v %q %q", stable.Verdict, stable.Pass, stable.Counts(), stable.Reason)
	}
	if r := Tally([]*Result{loop(true), loop(false)}); r.Verdict != Loop || r.Pass {
		t.Errorf("2 LOOPs, one failing on its own: got %s pass=%v, want LOOP failing", r.Verdict, r.Pass)
	}
	flaky := Tally([]*Result{loop(true), clean, loop(true)})
	if flaky.Verdict != Unstable || flaky.Pass || flaky.Counts() != "CLEAN 1/3, LOOP 2/3" ||
		flaky.Reason != "CLEAN in 1 of 3 runs: 20 of 20 served | LOOP in 2 of 3 runs: bounced" {
		t.Errorf("LOOP, CLEAN, LOOP: got %s pass=%v %q %q", flaky.Verdict, flaky.Pass, flaky.Counts(), flaky.Reason)
	}
	// Two verdicts the judge accepted (clientsMayStay): both shown, passing.
	accepted := Tally([]*Result{{Verdict: NoBalance, Expected: NoBalance, Pass: true, Reason: "stayed"}, {Verdict: Clean, Expected: NoBalance, Pass: true, Reason: "back"}})
	if !accepted.Pass || accepted.VerdictText() != "CLEAN 1/2, NO-BALANCE 1/2" || accepted.Reason != "CLEAN in 1 of 2 runs: back | NO-BALANCE in 1 of 2 runs: stayed" {
		t.Errorf("NO-BALANCE, CLEAN, each accepted: got %s pass=%v %q %q", accepted.Verdict, accepted.Pass, accepted.VerdictText(), accepted.Reason)
	}
	if stable.VerdictText() != "LOOP 3/3" || flaky.VerdictText() != "UNSTABLE (CLEAN 1/3, LOOP 2/3)" || (&Result{Verdict: Loop}).VerdictText() != "LOOP" {
		t.Errorf("verdict texts %q, %q", stable.VerdictText(), flaky.VerdictText())
	}
}

// TestLatencies: nearest-rank percentiles over the served connections only.
func TestLatencies(t *testing.T) {
	var conns []Conn
	for i := 1; i <= 100; i++ {
		conns = append(conns, Conn{ServedBy: 1, Latency: time.Duration(i) * time.Millisecond})
	}
	conns = append(conns, Conn{Hung: true, Latency: 5 * time.Second}) // not served: not counted
	got := latencies(conns)
	if want := (Percentiles{P50: 50 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}); got != want {
		t.Errorf("latencies: %+v, want %+v", got, want)
	}
	if got := latencies(conns[100:]); got != (Percentiles{}) {
		t.Errorf("none served: %+v", got)
	}
}

// TestFailureCause: each kind of failure from real and wrapped errors,
// and which of them a stopped server causes (refused).
func TestFailureCause(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := net.Dial("tcp", addr)                                              // nothing listens there now
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded} // as net.Dialer returns it
	for _, tc := range []struct {
		err   error
		want  bool
		cause string
	}{
		{refused, true, "refused"},
		{fmt.Errorf("query: %w", mysql.ErrInvalidConn), true, "closed"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true, "reset"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, false, "unreachable"}, // the loop's ICMP
		{dialTimeout, false, "handshake timeout"},
		{context.DeadlineExceeded, false, "answer timeout"},
	} {
		c := Conn{Cause: failureCause(tc.err)}
		if c.Cause != tc.cause || c.refused() != tc.want {
			t.Errorf("failureCause(%v) = %q, refused %v; want %q, %v", tc.err, c.Cause, c.refused(), tc.cause, tc.want)
		}
	}
}

// A run that fails before it is judged keeps its row: ERROR with its
// reason, failed, beside the runs that did go.
func TestRunMatrixKeepsErrorRows(t *testing.T) {
	broken := &lab.Topology{Name: "broken"} // no directors: NewCluster refuses it
	impl := func() Implementation { return &Keepalived{} }
	cells := []Cell{{Impl: impl, Event: Steady, Fix: FixNone}, {Impl: impl, Event: FailoverKill, Fix: FixFwmark}}
	var log strings.Builder
	rs, err := RunMatrix(context.Background(), broken, cells, 1, 2, Options{}, &log)
	if err != nil {
		t.Fatalf("RunMatrix: %v, want ERROR rows", err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	for i, r := range rs {
		if r.Verdict != Error || r.Pass || r.Reason == "" || r.Cell != cells[i].Name() || r.Expected != Expected(cells[i].Fix, cells[i].Event) {
			t.Errorf("cell %d: %+v, want an ERROR row with its reason and expectation", i, *r)
		}
	}
	if _, err := RunMatrix(canceled(), broken, cells, 1, 1, Options{}, &log); err == nil {
		t.Errorf("an interrupted matrix returned no error")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Each built-in backend answers a client of its kind with its server_id:
// the HTTPS one over TLS with the certificate it made.
func TestBackendKinds(t *testing.T) {
	for k, kind := range BackendKinds {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var pc net.PacketConn
		if kind == BackendUDP {
			if pc, err = net.ListenPacket("udp4", ln.Addr().String()); err != nil {
				t.Fatal(err)
			}
		}
		b := serveBackend(ln, pc, kind, 40+k)
		var d net.Dialer
		id, err := ask(context.Background(), d.DialContext, kind, ln.Addr().String(), time.Second, 5*time.Second)
		b.stop()
		if err != nil || id != 40+k {
			t.Errorf("%s: server_id %d, %v; want %d", kind, id, err, 40+k)
		}
	}
	// The UDP backend answers from the address it was asked at, as a
	// realserver must from the VIP: here 127.0.0.2 of a socket bound to
	// every address, whose answer would otherwise come from 127.0.0.1.
	all, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ub := serveBackend(tcp, all, BackendUDP, 11)
	port := all.LocalAddr().(*net.UDPAddr).Port
	id, err := ask(context.Background(), (&net.Dialer{}).DialContext, BackendUDP, fmt.Sprintf("127.0.0.2:%d", port), time.Second, 2*time.Second)
	ub.stop()
	if err != nil || id != 11 {
		t.Errorf("UDP to 127.0.0.2: server_id %d, %v; want 11, answered from 127.0.0.2", id, err)
	}
	// The UDP backend is the banner on TCP too.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	u := serveBackend(ln, pc, BackendUDP, 9)
	var d net.Dialer
	id, err = ask(context.Background(), d.DialContext, BackendBanner, ln.Addr().String(), time.Second, 5*time.Second)
	u.stop()
	if err != nil || id != 9 {
		t.Errorf("the UDP backend's TCP banner: server_id %d, %v; want 9", id, err)
	}
	// A plain HTTP client of the HTTPS backend gets no page.
	if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	b := serveBackend(ln, nil, BackendHTTPS, 7)
	defer b.stop()
	if id, err := ask(context.Background(), d.DialContext, BackendHTTP, ln.Addr().String(), time.Second, 5*time.Second); err == nil {
		t.Errorf("HTTP to the HTTPS backend answered server_id %d", id)
	}
}

// The waits follow the configs' timers, and are the lab's own without.
func TestTimers(t *testing.T) {
	var lab Timers
	slow := Timers{Advert: 5 * time.Second, PreemptDelay: 30 * time.Second, CheckDown: 80 * time.Second, CheckUp: 75 * time.Second}
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"takeover", lab.takeoverBound(), 15 * time.Second},
		{"ready", lab.readyBound(), 90 * time.Second},
		{"check down", lab.checkDownBound(), 30 * time.Second},
		{"slow takeover", slow.takeoverBound(), 35 * time.Second},
		{"slow failback", slow.preemptBound(), 65 * time.Second},
		{"slow ready", slow.readyBound(), 110 * time.Second},
		{"slow check down", slow.checkDownBound(), 80 * time.Second},
		{"slow check up", slow.checkUpBound(), 75 * time.Second},
		{"slow failback estimate", slow.Estimate(Failback), 85 * time.Second},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s, want %s", c.name, c.got, c.want)
		}
	}
}

// The UDP backend answers a DNS query, as keepalived's DNS_CHECK sends,
// with a DNS answer of the query's type: SOA of "." by default, or A.
func TestDNSAnswer(t *testing.T) {
	for _, typ := range []dnsmessage.Type{dnsmessage.TypeSOA, dnsmessage.TypeA} {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4242, RecursionDesired: true})
		b.StartQuestions()
		b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("."), Type: typ, Class: dnsmessage.ClassINET})
		q, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		out, ok := dnsAnswer(q)
		var m dnsmessage.Message
		if !ok || m.Unpack(out) != nil {
			t.Fatalf("%v: no answer", typ)
		}
		if m.ID != 4242 || !m.Response || m.RCode != dnsmessage.RCodeSuccess || len(m.Questions) != 1 || len(m.Answers) != 1 || m.Answers[0].Header.Type != typ {
			t.Errorf("%v: answer %+v", typ, m)
		}
	}
	if _, ok := dnsAnswer([]byte("server_id?\n")); ok {
		t.Errorf("the workload's question read as DNS")
	}
}

// TestFindingsDoc: docs/findings.md is the code's Findings, never a copy
// that drifts.
func TestFindingsDoc(t *testing.T) {
	labtest.Golden(t, "../docs/findings.md", FindingsMarkdown())
}

// TestSoftirq: procfs's reading is /proc/stat's softirq column, USER_HZ
// (100) ticks, in ms.
func TestSoftirq(t *testing.T) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	ticks, err := strconv.ParseUint(f[7], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := softirq()
	if err != nil || ms < ticks*10 || ms > ticks*10+1000 {
		t.Errorf("softirq %d ms, %v; /proc/stat had %d ticks (%d ms) just before", ms, err, ticks, ticks*10)
	}
}

// TestSMTPBackend: the SMTP backend has keepalived's SMTP_CHECK
// conversation: 220 to the connection, 250 to HELO, 221 to QUIT, each
// status three digits and a space (check_smtp.c's smtp_get_status).
func TestSMTPBackend(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := serveBackend(ln, nil, BackendSMTP, 3)
	defer b.stop()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for _, step := range []struct{ send, want string }{{"", "220 "}, {"HELO lvslab\r\n", "250 "}, {"QUIT\r\n", "221 "}} {
		if step.send != "" {
			io.WriteString(c, step.send)
		}
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, step.want) || !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("after %q: %q, %v; want %q...\\r\\n", step.send, line, err, step.want)
		}
	}
}

// loggingDirectors is an Implementation whose only part is its logs.
type loggingDirectors struct {
	Implementation
	log string
}

func (d *loggingDirectors) Logs() map[string]string {
	return map[string]string{"d1": d.log, "d2": "quiet"}
}

// TestWaitPair: a pair wait ends on the pair's progress, not the clock.
// Moving (its answer or a director's log) it waits past its stall bound
// up to the ceiling; still, it fails after the stall bound.
func TestWaitPair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		impl := &loggingDirectors{}
		// The answer never changes; d1 logs a line every 20 s, done at 85 s.
		t0 := time.Now()
		err := waitPair(ctx, impl, 30*time.Second, func() string {
			if time.Since(t0) >= 85*time.Second {
				return ""
			}
			impl.log = strings.Repeat("x", int(time.Since(t0)/(20*time.Second)))
			return "d2 holds the VIP too"
		})
		if err != nil {
			t.Errorf("a logging pair, done at 85 s with a 30 s stall bound: %v", err)
		}
		// The logs still, the answer changing every 20 s: also progress.
		t0 = time.Now()
		err = waitPair(ctx, impl, 30*time.Second, func() string {
			if time.Since(t0) >= 80*time.Second {
				return ""
			}
			return fmt.Sprintf("d1's virtual service has %d realservers", time.Since(t0)/(20*time.Second))
		})
		if err != nil {
			t.Errorf("an answer moving every 20 s, done at 80 s: %v", err)
		}
		// Nothing moves: fails after 30 s, saying what was missing.
		t0 = time.Now()
		err = waitPair(ctx, impl, 30*time.Second, func() string { return "d2 holds the VIP too" })
		if took := time.Since(t0); err == nil || !strings.Contains(err.Error(), "no progress for 30s") ||
			!strings.Contains(err.Error(), "d2 holds the VIP too") || took < 30*time.Second || took > 31*time.Second {
			t.Errorf("a still pair: after %s, %v; want no progress for 30s and what is missing", took, err)
		}
		// Moving forever: ends at the ceiling, three times the stall bound.
		t0 = time.Now()
		err = waitPair(ctx, impl, 30*time.Second, func() string { return time.Since(t0).Truncate(10 * time.Second).String() })
		if took := time.Since(t0); err == nil || !strings.Contains(err.Error(), "though progressing") || took < 90*time.Second || took > 91*time.Second {
			t.Errorf("a pair moving forever: after %s, %v; want the ceiling at 90s", took, err)
		}
	})
}
