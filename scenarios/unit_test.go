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
	}{{"d1-none", 0, FixNone, false}, {"d2-fwmark", 1, FixFwmark, false}, {"d1-fwmark-learn", 0, FixFwmark, true}, {"d2-backup-only", 1, FixBackupOnly, false}, {"d2-fwmark-only", 1, FixFwmarkOnly, false}} {
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
		{FixFwmarkOnly, Steady, Clean},       // the mark alone guards as the mark does
		{FixFwmarkOnly, FailoverKill, Clean}, // unless the clients reuse their ports:
		{FixFwmarkOnly, CrashReuse, Loop},    // the crash hole
		{FixFwmark, CrashReuse, Clean},       // the peer REDIRECT closes it
		{FixNone, CrashReuse, Loop},
		{FixBackupOnly, CrashReuse, Loop}, // a killed MASTER, as FailoverKill
	} {
		if got := Expected(tc.fix, tc.ev); got != tc.want {
			t.Errorf("Expected(%s, %s): got %s, want %s", tc.fix, tc.ev, got, tc.want)
		}
	}
}

func TestTally(t *testing.T) {
	loop := func(pass bool) *Result {
		return &Result{Verdict: Loop, Expected: Loop, Pass: pass, Reason: "bounced"}
	}
	clean := &Result{Verdict: Clean, Expected: Loop, Reason: "served"}
	for _, tc := range []struct {
		name    string
		runs    []*Result
		verdict Verdict
		pass    bool
		counts  map[Verdict]int
		reasons map[Verdict]string
		text    string
	}{
		{"3 LOOPs", []*Result{loop(true), loop(true), loop(true)}, Loop, true,
			map[Verdict]int{Loop: 3}, map[Verdict]string{Loop: "bounced"}, "LOOP 3/3"},
		{"2 LOOPs, one failing on its own", []*Result{loop(true), loop(false)}, Loop, false,
			map[Verdict]int{Loop: 2}, map[Verdict]string{Loop: "bounced"}, "LOOP 2/2"},
		{"LOOP, CLEAN, LOOP", []*Result{loop(true), clean, loop(true)}, Unstable, false,
			map[Verdict]int{Loop: 2, Clean: 1}, map[Verdict]string{Loop: "bounced", Clean: "served"}, "UNSTABLE (CLEAN 1/3, LOOP 2/3)"},
		// Two verdicts the judge accepted (clientsMayStay): both shown, passing.
		{"NO-BALANCE, CLEAN, each accepted", []*Result{{Verdict: NoBalance, Expected: NoBalance, Pass: true, Reason: "stayed"}, {Verdict: Clean, Expected: NoBalance, Pass: true, Reason: "back"}},
			NoBalance, true, map[Verdict]int{NoBalance: 1, Clean: 1}, map[Verdict]string{NoBalance: "stayed", Clean: "back"}, "CLEAN 1/2, NO-BALANCE 1/2"},
	} {
		r := Tally(tc.runs)
		if r.Verdict != tc.verdict || r.Pass != tc.pass || !cmp.Equal(r.Runs, tc.counts) || !cmp.Equal(r.RunReasons, tc.reasons) || r.VerdictText() != tc.text {
			t.Errorf("%s: got %s pass=%v %v %v %q; want %s pass=%v %v %v %q", tc.name, r.Verdict, r.Pass, r.Runs, r.RunReasons, r.VerdictText(),
				tc.verdict, tc.pass, tc.counts, tc.reasons, tc.text)
		}
	}
	if v := (&Result{Verdict: Loop}).VerdictText(); v != "LOOP" {
		t.Errorf("a single run's verdict text %q", v)
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
func TestMatrixKeepsErrorRows(t *testing.T) {
	broken := &lab.Topology{Name: "broken"} // no directors: NewCluster refuses it
	impl := func() Implementation { return &Keepalived{} }
	cells := []Cell{{Impl: impl, Event: Steady, Fix: FixNone}, {Impl: impl, Event: FailoverKill, Fix: FixFwmark}}
	var log strings.Builder
	rs, err := Matrix{Topo: broken, Cells: cells, Repeat: 1, Jobs: 2}.Run(context.Background(), &log)
	if err != nil {
		t.Fatalf("Matrix.Run: %v, want ERROR rows", err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	for i, r := range rs {
		if r.Verdict != Error || r.Pass || r.Reason == "" || r.Cell != cells[i].Name() || r.Expected != Expected(cells[i].Fix, cells[i].Event) {
			t.Errorf("cell %d: %+v, want an ERROR row with its reason and expectation", i, *r)
		}
	}
	if _, err := (Matrix{Topo: broken, Cells: cells, Repeat: 1, Jobs: 1}).Run(canceled(), &log); err == nil {
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

func TestSumInPkts(t *testing.T) {
	// /proc/net/ip_vs_stats_percpu of a 2-CPU guest (6.1): the CPU lines
	// count 0x10 and 0xC8 packets in; the estimator's total lags them.
	data := []byte(`       Total Incoming Outgoing         Incoming         Outgoing
CPU    Conns  Packets  Packets            Bytes            Bytes
  0        3       10        0              6A0                0
  1       28       C8        0             2EE0                0
  ~       2B       40        0             1000                0

     Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s
                1        5        0              140                0
`)
	n, err := sumInPkts(data)
	if err != nil || n != 0x10+0xC8 {
		t.Errorf("sumInPkts: %d, %v; want %d", n, err, 0x10+0xC8)
	}
	if _, err := sumInPkts([]byte("  0        3       zz        0              6A0                0\n")); err == nil {
		t.Error("a CPU line with a packet count that is not hex: no error")
	}
}
