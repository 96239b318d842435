package scenarios_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/scenarios"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// TestIPVSScenarios runs the conformance specs. They need root and kernel
// IPVS: `make test` runs them through `lvslab kexec` (in the micro-VM on
// hosts without ip_vs) with LVSLAB_REQUIRE_IPVS=1, so they cannot skip there.
func TestIPVSScenarios(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Conformance scenarios")
}

func requireIPVS() {
	if testing.Short() {
		Skip("conformance scenarios: skipped with -short")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			Fail("conformance scenarios need root (CI=true: a CI run must not skip them)")
		}
		Skip("conformance scenarios need root")
	}
	switch why, fail := labtest.MissingIPVS(); {
	case fail:
		Fail(why)
	case why != "":
		Skip(why)
	}
}

// runBound bounds one scenario run once its lab is built (Options.Bound):
// a scenario takes 10-20 s alone and about a minute beside five others
// under TCG. The time a lab waits for admission (lab.Admit) is not
// counted: labs take turns to start their servers.
const runBound = 4 * time.Minute

// specTimeout is only the safety net of a spec that hangs outside any
// run's bound (its own checks, admission that never comes): a spec with
// several runs (lvslab check's pairs) counts one per run.
const specTimeout = 15 * time.Minute

// timeout is a spec's SpecTimeout: specTimeout for each of its repeats.
func timeout() SpecTimeout { return SpecTimeout(time.Duration(*repeat) * specTimeout) }

// entry is a table entry bounded by timeout (a table takes no SpecTimeout
// of its own).
func entry(description string, args ...any) TableEntry {
	return Entry(description, append(args, timeout())...)
}

// run runs one cell of the matrix with 20 connections, -lvslab.repeat
// times (then tallied: the first run's evidence, every run's verdict);
// expected, if given, replaces the table's expectation.
func run(ctx SpecContext, impl scenarios.Implementation, ev scenarios.Event, fix scenarios.Fix, expected ...scenarios.Verdict) *scenarios.Result {
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	Expect(err).NotTo(HaveOccurred())
	return runOn(ctx, topo, scenarios.Service{}, nil, impl, ev, fix, expected...)
}

// runOn is run in a lab built from topo, the workload asking svc, the
// boxes serving backends as well (a pair with several services).
func runOn(ctx SpecContext, topo *lab.Topology, svc scenarios.Service, backends []scenarios.Service, impl scenarios.Implementation, ev scenarios.Event, fix scenarios.Fix, expected ...scenarios.Verdict) *scenarios.Result {
	opts := scenarios.Options{Connections: 20, RunDir: GinkgoT().TempDir(), Progress: GinkgoWriter, Service: svc, Backends: backends, Bound: runBound}
	if len(expected) > 0 {
		opts.Expected = expected[0]
	}
	var runs []*scenarios.Result
	for range *repeat {
		r, err := scenarios.Run(ctx, topo, impl, fix, ev, opts)
		Expect(err).NotTo(HaveOccurred())
		if *repeat > 1 { // each run's evidence: the tally keeps the first's
			GinkgoWriter.Printf("run %d: %s: %s; sync daemons %v\n", len(runs)+1, r.Verdict, r.Reason, r.SyncDaemons)
			if !r.Pass {
				for node, log := range r.Logs {
					GinkgoWriter.Printf("--- run %d, %s ---\n%s\n", len(runs)+1, node, log)
				}
			}
		}
		runs = append(runs, r)
	}
	r := runs[0]
	if *repeat > 1 {
		r = scenarios.Tally(runs)
		GinkgoWriter.Printf("%d runs: %s\n", *repeat, r.VerdictText())
	}
	record(r)
	return r
}

// scenario runs one cell of the matrix and checks it.
func scenario(ctx SpecContext, impl scenarios.Implementation, ev scenarios.Event, fix scenarios.Fix) *scenarios.Result {
	r := run(ctx, impl, ev, fix)
	GinkgoWriter.Printf("%s %s %s: %s (failover %s): %s\n", r.Scenario, r.Implementation, r.Fix, r.Verdict, r.Failover, r.Reason)
	GinkgoWriter.Printf("ipvs %+v; bounces %+v; frames %+v\n", r.IPVS, r.Bounces, r.Frames)
	for node, log := range r.Logs {
		GinkgoWriter.Printf("--- %s's director log ---\n%s", node, log)
	}
	// Pass: the verdict Expected names (or, where the clients' ARP timers
	// decide, the other one the judge accepts with its evidence), every
	// acknowledged write kept.
	Expect(r.Pass).To(BeTrue(), r.Reason)
	if fix == scenarios.FixFwmark && ev != scenarios.MySQLDown {
		Expect(r.Share).To(HaveLen(2), "both boxes serve")
	}
	// Failover times are reported (r.Failover, shown by the headline), not
	// asserted: Run fails if the BACKUP has not taken the VIP within 15 s.
	return r
}

// syncDaemons are the result's sync daemons by node, as ipvsadm lines.
func syncDaemons(r *scenarios.Result) map[string][]string {
	lines := map[string][]string{}
	for node, ds := range r.SyncDaemons {
		for _, d := range ds {
			lines[node] = append(lines[node], d.String())
		}
	}
	return lines
}

// backupOnlyKilled runs the backup_only fix through a SIGKILL of the
// MASTER's director. The killed box keeps its rules and its master sync
// daemon (a kernel thread), and the new MASTER switches to master: with no
// backup daemon on either box, backup_only guards neither and the old
// MASTER re-balances what the new one forwards.
func backupOnlyKilled(ctx SpecContext, impl scenarios.Implementation) {
	r := scenario(ctx, impl, scenarios.FailoverKill, scenarios.FixBackupOnly)
	for _, node := range []string{"d1", "d2"} {
		Expect(syncDaemons(r)[node]).To(HaveExactElements(HavePrefix("master sync daemon (mcast=eth0, syncid=51")), node)
	}
}

// lvslabBinary is the lvslab executable the Go director runs from: make
// test and make conformance set LVSLAB_BIN.
func lvslabBinary() string {
	bin := os.Getenv("LVSLAB_BIN")
	if bin == "" {
		Fail("set LVSLAB_BIN to a built lvslab (make test does)")
	}
	return bin
}

var _ = Describe("Two-box LVS-DR", func() {
	BeforeEach(func() {
		inShard()
		requireIPVS()
	})

	DescribeTable("keepalived on both boxes",
		func(ctx SpecContext, ev scenarios.Event, fix scenarios.Fix) {
			scenario(ctx, &scenarios.Keepalived{}, ev, fix)
		},
		entry("steady state, no fix: the ping-pong loop", Label("test", "steady-state"), scenarios.Steady, scenarios.FixNone),
		entry("steady state, fwmark + MAC guard", Label("test", "steady-state"), scenarios.Steady, scenarios.FixFwmark),
		entry("MASTER stopped gracefully, no fix: nothing left to loop on", Label("failover"), scenarios.FailoverStop, scenarios.FixNone),
		entry("MASTER stopped gracefully, fwmark guard", Label("failover"), scenarios.FailoverStop, scenarios.FixFwmark),
		entry("MASTER killed, no fix: its leftover rules loop in reverse", Label("failover"), scenarios.FailoverKill, scenarios.FixNone),
		entry("MASTER killed, fwmark guard", Label("test", "failover"), scenarios.FailoverKill, scenarios.FixFwmark),
		entry("MASTER stopped gracefully, backup_only", Label("failover"), scenarios.FailoverStop, scenarios.FixBackupOnly),
		entry("BACKUP's MySQL down: TCP_CHECK takes it out", Label("health"), scenarios.MySQLDown, scenarios.FixFwmark),
		entry("steady state, notify REDIRECT while BACKUP", Label("test", "steady-state"), scenarios.Steady, scenarios.FixRedirect),
		entry("MASTER killed, notify REDIRECT: the killed box never ran notify_backup, the loop in reverse", Label("failover"), scenarios.FailoverKill, scenarios.FixRedirect),
		entry("VRRP-only switchover, no fix: the old MASTER loops in reverse", Label("failover"), scenarios.Switchover, scenarios.FixNone),
		entry("VRRP-only switchover, fwmark guard", Label("failover"), scenarios.Switchover, scenarios.FixFwmark),
		entry("failback with preempt, fwmark guard", Label("failover"), scenarios.Failback, scenarios.FixFwmark),
	)

	It("keepalived MASTER killed, backup_only: master sync daemons on both boxes, the loop in reverse", Label("test", "failover", "sync"), timeout(), func(ctx SpecContext) {
		backupOnlyKilled(ctx, &scenarios.Keepalived{})
	})

	DescribeTable("the lvslab Go director on both boxes",
		func(ctx SpecContext, ev scenarios.Event, fix scenarios.Fix) {
			scenario(ctx, &scenarios.GoDirector{Binary: lvslabBinary()}, ev, fix)
		},
		entry("steady state, no guard: the ping-pong loop", Label("test", "steady-state"), scenarios.Steady, scenarios.FixNone),
		entry("steady state, fwmark guard", Label("test", "steady-state"), scenarios.Steady, scenarios.FixFwmark),
		entry("MASTER stopped gracefully, fwmark guard", Label("failover"), scenarios.FailoverStop, scenarios.FixFwmark),
		entry("MASTER killed, fwmark guard", Label("test", "failover"), scenarios.FailoverKill, scenarios.FixFwmark),
		entry("MASTER killed, no guard: its leftover rules loop in reverse", Label("failover"), scenarios.FailoverKill, scenarios.FixNone),
		entry("steady state, backup-only guard + sync daemon", Label("test", "steady-state"), scenarios.Steady, scenarios.FixBackupOnly),
		entry("MASTER stopped gracefully, backup-only guard", Label("failover"), scenarios.FailoverStop, scenarios.FixBackupOnly),
		entry("BACKUP's MySQL down: the health check quiesces it", Label("health"), scenarios.MySQLDown, scenarios.FixFwmark),
		entry("VRRP-only switchover, no guard: the old MASTER loops in reverse", Label("failover"), scenarios.Switchover, scenarios.FixNone),
		entry("VRRP-only switchover, fwmark guard", Label("failover"), scenarios.Switchover, scenarios.FixFwmark),
		entry("failback with preempt, fwmark guard", Label("failover"), scenarios.Failback, scenarios.FixFwmark),
		entry("restarted with the fwmark guard after running without one: no stale VIP:port service", Label("failover"), scenarios.Reconfigure, scenarios.FixFwmark),
	)

	It("lvslab MASTER killed, backup-only guard: master sync daemons on both boxes, the loop in reverse", Label("failover", "sync"), timeout(), func(ctx SpecContext) {
		backupOnlyKilled(ctx, &scenarios.GoDirector{Binary: lvslabBinary()})
	})

	// keepalived's sync daemon in each of its forms, under backup_only in
	// steady state, and the daemons the kernel then lists on each box
	// (ipvsadm -L --daemon lines, each ending in options): what a form
	// leaves out is the kernel's default (maxlen 1472 for a 1500 MTU,
	// 224.0.0.81:8848, TTL 1) or keepalived's (the sync id: the VRID, but 0
	// for the two forms without a global instance).
	DescribeTable("keepalived's lvs_sync_daemon forms, backup_only",
		func(ctx SpecContext, form scenarios.SyncForm, options string, d1, d2 []string, want scenarios.Verdict) {
			r := run(ctx, &scenarios.Keepalived{Sync: form}, scenarios.Steady, scenarios.FixBackupOnly, want)
			GinkgoWriter.Printf("%s: %s: %s\n", r.Implementation, r.Verdict, r.Reason)
			with := func(lines []string) (out []string) {
				for _, l := range lines {
					out = append(out, l+options+")")
				}
				return out
			}
			Expect(syncDaemons(r)).To(Equal(map[string][]string{"d1": with(d1), "d2": with(d2)}))
			Expect(r.Verdict).To(Equal(want), r.Reason)
			Expect(r.Pass).To(BeTrue(), r.Reason)
			if want == scenarios.NoBalance {
				Expect(r.Share).To(HaveLen(1), "the MASTER serves alone")
			} else {
				Expect(r.Share).To(HaveLen(2), "both boxes serve")
			}
		},
		entry("interface and instance", Label("steady-state", "sync"), scenarios.SyncForms[0], ", maxlen=1472, group=224.0.0.81, port=8848, ttl=1",
			[]string{"master sync daemon (mcast=eth0, syncid=51"}, []string{"backup sync daemon (mcast=eth0, syncid=51"}, scenarios.Clean),
		entry("inst keyword and sync id", Label("steady-state", "sync"), scenarios.SyncForms[1], ", maxlen=1472, group=224.0.0.81, port=8848, ttl=1",
			[]string{"master sync daemon (mcast=eth0, syncid=7"}, []string{"backup sync daemon (mcast=eth0, syncid=7"}, scenarios.Clean),
		entry("every option", Label("steady-state", "sync"), scenarios.SyncForms[2], ", maxlen=1400, group=224.0.0.82, port=8850, ttl=2",
			[]string{"master sync daemon (mcast=eth0, syncid=7"}, []string{"backup sync daemon (mcast=eth0, syncid=7"}, scenarios.Clean),
		entry("per instance (deprecated): sync id 0", Label("steady-state", "sync"), scenarios.SyncForms[4], ", maxlen=1472, group=224.0.0.81, port=8848, ttl=1",
			[]string{"master sync daemon (mcast=eth0, syncid=0"}, []string{"backup sync daemon (mcast=eth0, syncid=0"}, scenarios.Clean),
		// With no VRRP instance to follow, keepalived runs both daemons on
		// both boxes from the start: under backup_only the MASTER stops
		// balancing too and serves every connection itself (NO-BALANCE).
		entry("interface only: both daemons on both boxes, no balancing", Label("test", "steady-state", "sync"), scenarios.SyncForms[3], ", maxlen=1472, group=224.0.0.81, port=8848, ttl=1",
			[]string{"master sync daemon (mcast=eth0, syncid=0", "backup sync daemon (mcast=eth0, syncid=0"},
			[]string{"master sync daemon (mcast=eth0, syncid=0", "backup sync daemon (mcast=eth0, syncid=0"}, scenarios.NoBalance),
	)

	DescribeTable("keepalived on one box, lvslab on the other",
		func(ctx SpecContext, keepalivedFirst bool, ev scenarios.Event, fix scenarios.Fix) {
			pair := scenarios.Mixed{&scenarios.GoDirector{Binary: lvslabBinary(), LearnPeerMAC: true}, &scenarios.Keepalived{}}
			if keepalivedFirst {
				pair[0], pair[1] = pair[1], pair[0]
			}
			scenario(ctx, pair, ev, fix)
		},
		entry("keepalived MASTER, lvslab BACKUP, no fix: the loop", Label("steady-state", "mixed"), true, scenarios.Steady, scenarios.FixNone),
		entry("keepalived MASTER, lvslab BACKUP, fwmark guard", Label("test", "steady-state", "mixed"), true, scenarios.Steady, scenarios.FixFwmark),
		entry("lvslab MASTER, keepalived BACKUP, fwmark guard", Label("steady-state", "mixed"), false, scenarios.Steady, scenarios.FixFwmark),
		entry("keepalived MASTER killed, fwmark guard: lvslab takes over", Label("failover", "mixed"), true, scenarios.FailoverKill, scenarios.FixFwmark),
		entry("lvslab MASTER killed, fwmark guard: keepalived takes over", Label("failover", "mixed"), false, scenarios.FailoverKill, scenarios.FixFwmark),
	)

	// The crash hole (#24, Findings): the MASTER killed while the clients
	// reuse their ports. The mark alone leaves it open (LOOP: the killed
	// MASTER's table sends a reused port back); the peer REDIRECT beside
	// it closes it. make conformance REPEAT=K tallies each cell's runs.
	DescribeTable("the crash hole: the MASTER killed, the clients reusing their ports",
		func(ctx SpecContext, impl string, fix scenarios.Fix) {
			r := scenario(ctx, adversityImpls[impl](), scenarios.CrashReuse, fix)
			if fix == scenarios.FixFwmark {
				Expect(r.IPVS["d1"].InPkts).To(BeZero(), "the killed MASTER balanced nothing again: %s", r.Reason)
			}
		},
		entry("keepalived, the mark alone: LOOP", Label("failover", "crash-hole"), "keepalived", scenarios.FixFwmarkOnly),
		entry("keepalived, the mark and the peer REDIRECT: CLEAN", Label("failover", "crash-hole"), "keepalived", scenarios.FixFwmark),
		entry("lvslab, the mark alone: LOOP", Label("failover", "crash-hole"), "lvslab", scenarios.FixFwmarkOnly),
		entry("lvslab, the mark and the peer REDIRECT (its default): CLEAN", Label("failover", "crash-hole"), "lvslab", scenarios.FixFwmark),
		entry("keepalived killed, lvslab takes over, the mark alone: LOOP", Label("failover", "crash-hole", "mixed"), "keepalived+lvslab", scenarios.FixFwmarkOnly),
		entry("keepalived killed, lvslab takes over, the mark and the peer REDIRECT: CLEAN", Label("failover", "crash-hole", "mixed"), "keepalived+lvslab", scenarios.FixFwmark),
	)

	// What the peer REDIRECT costs connections open across a failover
	// (scenarios/established.go): nothing for those the BACKUP served;
	// those the killed MASTER served itself break with or without it.
	DescribeTable("connections open across a failover",
		func(ctx SpecContext, impl string, fix scenarios.Fix) {
			topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
			Expect(err).NotTo(HaveOccurred())
			pair := adversityImpls[impl]()
			l, c, done, err := scenarios.SettledPair(ctx, topo, pair, fix, lab.Options{RunDir: GinkgoT().TempDir(), Progress: GinkgoWriter})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(done)
			e, err := scenarios.EstablishedAcrossFailover(ctx, l, c, pair, 20)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("%s %s: %s\n", impl, fix, e)
			Expect(e.BackupServed).To(BeNumerically(">", 0), "the MASTER balanced some connections to the BACKUP")
			Expect(e.BackupKept).To(Equal(e.BackupServed), "every connection the BACKUP served answers after the takeover: %s", e)
		},
		entry("keepalived, the mark and the peer REDIRECT", Label("failover", "crash-hole"), "keepalived", scenarios.FixFwmark),
		entry("keepalived, the mark alone", Label("failover", "crash-hole"), "keepalived", scenarios.FixFwmarkOnly),
		entry("lvslab, the mark and the peer REDIRECT", Label("failover", "crash-hole"), "lvslab", scenarios.FixFwmark),
		entry("lvslab, the mark alone", Label("failover", "crash-hole"), "lvslab", scenarios.FixFwmarkOnly),
	)

	// Sub-second failover (#24): VRRPv3 adverts every 100 ms, keepalived
	// and the lvslab director interoperating at that interval; the
	// takeover's time is BenchmarkIPVSFailover's (BENCH.md), not asserted.
	DescribeTable("adverts every 100 ms (VRRPv3 centiseconds)",
		func(ctx SpecContext, keepalivedFirst bool) {
			const advert = 100 * time.Millisecond
			pair := scenarios.Mixed{&scenarios.GoDirector{Binary: lvslabBinary(), LearnPeerMAC: true, Advert: advert}, &scenarios.Keepalived{Advert: advert}}
			if keepalivedFirst {
				pair[0], pair[1] = pair[1], pair[0]
			}
			scenario(ctx, pair, scenarios.FailoverKill, scenarios.FixFwmark)
		},
		entry("keepalived MASTER killed: lvslab takes over", Label("failover", "mixed", "subsecond"), true),
		entry("lvslab MASTER killed: keepalived takes over", Label("failover", "mixed", "subsecond"), false),
	)

	// Adversity: every event for both implementations and the mixed pair,
	// under each fix they run; `make test` runs one (adversityInTest).
	DescribeTable("adversity: split brain, advert loss, a frozen or isolated MASTER, a client cut off, a delayed failover, the BACKUP's MySQL flapping",
		func(ctx SpecContext, impl string, ev scenarios.Event, fix scenarios.Fix) {
			r := scenario(ctx, adversityImpls[impl](), ev, fix)
			Expect(r.Writes).NotTo(BeNil(), "the write workload ran across the event")
			if ev != scenarios.FailoverDelayed {
				Expect(r.Takeovers).NotTo(BeNil())
			}
			switch ev {
			case scenarios.SplitBrain, scenarios.Frozen, scenarios.Isolated:
				Expect(*r.Takeovers).To(BeNumerically(">=", 1), "the BACKUP took the VIP during the event")
			case scenarios.ClientCut:
				Expect(*r.Takeovers).To(BeZero(), "VRRP went on: nothing failed over")
			case scenarios.MySQLFlap:
				Expect(*r.Takeovers).To(BeZero(), "a backend's health is not VRRP's: nothing failed over")
				Expect(r.Outages).NotTo(BeEmpty(), "the BACKUP's servers went down during the reads")
			}
		},
		adversityEntries(),
	)

	// The remedy for the clients a split brain leaves with the BACKUP
	// (Findings): the MASTER announces its VIPs again every 2 s, so
	// within 2 s of the heal the clients are back and the pair balances
	// under backup_only too.
	It("split-brain lvslab backup-only with garp_refresh 2s: the clients come back to the MASTER", Label("adversity"), timeout(), func(ctx SpecContext) {
		r := run(ctx, &scenarios.GoDirector{Binary: lvslabBinary(), GARPRefresh: 2 * time.Second}, scenarios.SplitBrain, scenarios.FixBackupOnly, scenarios.Clean)
		GinkgoWriter.Printf("%s: %s\n", r.Verdict, r.Reason)
		Expect(*r.Takeovers).To(BeNumerically(">=", 1), "the BACKUP took the VIP during the event")
		Expect(r.Verdict).To(Equal(scenarios.Clean), r.Reason)
		Expect(r.Pass).To(BeTrue(), r.Reason)
	})
})

var _ = Describe("Load", Label("load"), func() {
	BeforeEach(func() {
		inShard()
		requireIPVS()
	})

	// The loop's cost per connection at a fixed rate: frames on the
	// directors' bridge ports, against one director alone. Counts, not
	// times (latencies are BENCH.md's, from lvslab load). Serial: alone,
	// after the parallel specs; beside six other labs on two TCG cores a
	// paced workload's connections time out without any loop (52 of 200
	// for one director, once in CI), so loop evidence here is bounces,
	// not timeouts.
	It("at 50 connections/s the unfixed pair costs over twice one director's frames per connection; the fwmark pair under 1.5 times", Label("test"), Serial, timeout(), func(ctx SpecContext) {
		topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
		Expect(err).NotTo(HaveOccurred())
		load := func(fix scenarios.Fix, single bool) *scenarios.Result {
			opts := scenarios.Options{Connections: 200, Rate: 50, SingleDirector: single, RunDir: GinkgoT().TempDir(), Progress: GinkgoWriter, Bound: runBound,
				Service: scenarios.Service{Port: 9000, Backend: scenarios.BackendBanner}}
			if single {
				opts.Expected = scenarios.Clean
			}
			r, err := scenarios.Run(ctx, topo, &scenarios.Keepalived{}, fix, scenarios.Steady, opts)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("%s one-director=%v: %s, %.1f director frames per connection, p99 %s: %s\n", fix, single, r.Verdict, r.FramesPerConn, r.Latency.P99, r.Reason)
			return r
		}
		one, none, fwmark := load(scenarios.FixNone, true), load(scenarios.FixNone, false), load(scenarios.FixFwmark, false)
		Expect(one.Bounces.Bounced).To(BeZero(), "one director has no second box to bounce to")
		Expect(fwmark.Bounces.Bounced).To(BeZero(), "the guard stops the bounces")
		Expect(none.Bounces.Bounced).To(BeNumerically(">", 0), "the unfixed pair loops")
		Expect(none.Verdict).To(Equal(scenarios.Loop))
		// The report's cell is the unfixed pair's run, with the comparison.
		none.Reason += fmt.Sprintf("; %.1f director frames per connection, against %.1f for one director and %.1f for the fwmark pair",
			none.FramesPerConn, one.FramesPerConn, fwmark.FramesPerConn)
		record(none)
		Expect(none.FramesPerConn).To(BeNumerically(">", 2*one.FramesPerConn), "the loop multiplies the frames")
		Expect(fwmark.FramesPerConn).To(BeNumerically("<", 1.5*one.FramesPerConn), "the guarded pair costs about what one director does")
	})
})

// adversityImpls are the pairs the adversity events run on.
var adversityImpls = map[string]func() scenarios.Implementation{
	"keepalived": func() scenarios.Implementation { return &scenarios.Keepalived{} },
	"lvslab":     func() scenarios.Implementation { return &scenarios.GoDirector{Binary: lvslabBinary()} },
	"keepalived+lvslab": func() scenarios.Implementation {
		return scenarios.Mixed{&scenarios.Keepalived{}, &scenarios.GoDirector{Binary: lvslabBinary(), LearnPeerMAC: true}}
	},
}

// adversityInTest is the adversity cell make test runs: one, for the
// capability (make conformance runs them all).
const adversityInTest = "split-brain keepalived fwmark"

func adversityEntries() []TableEntry {
	fixes := map[string][]scenarios.Fix{
		"keepalived":        {scenarios.FixNone, scenarios.FixFwmark, scenarios.FixBackupOnly, scenarios.FixRedirect},
		"lvslab":            {scenarios.FixNone, scenarios.FixFwmark, scenarios.FixBackupOnly},
		"keepalived+lvslab": {scenarios.FixNone, scenarios.FixFwmark},
	}
	var out []TableEntry
	for _, impl := range []string{"keepalived", "lvslab", "keepalived+lvslab"} {
		for _, ev := range scenarios.Adversity {
			for _, fix := range fixes[impl] {
				name := fmt.Sprintf("%s %s %s", ev, impl, fix)
				labels := Label("adversity")
				if name == adversityInTest {
					labels = Label("test", "adversity")
				}
				out = append(out, entry(name, labels, impl, ev, fix))
			}
		}
	}
	return out
}
